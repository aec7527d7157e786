// claude-code, t3 and codex on a booted box of the test release, from a registry stand-in
// (Verdaccio serving the t3 fixtures, proxying the rest): installed at their
// pins behind /usr/local/bin links, a rerun asks the registry nothing, and a
// t3 that fails its health check (the bad nightly, 0.0.27) never replaces
// the working one. A CLI whose pinned integrity the registry does not serve
// fails its own stage, though its install was tried while apt ran, and the
// CLI after it, already installed in the background, is not put in place.
// Checked from outside: the commands, the links, a pairing, the folders.
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pins } from "../lib/inputs/pins.ts";
import { PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import {
  buildIn,
  nonIdempotentStages,
  PROJECT_DIR,
  startFreshVm,
  type BuildRun,
} from "./support/harness/build-in-vm.ts";
import { writeInputs } from "./support/stand-ins/sources.ts";
import { T3_BROKEN, T3_HEALTHY } from "./support/fixtures/t3/publish.ts";
import { startRegistryStandIn, type RegistryStandIn } from "./support/stand-ins/registry.ts";

const STAGES = "node,claude-code,t3,codex";
const PINS = JSON.parse(readFileSync(path.join(PROJECT_DIR, "pins.json"), "utf8")) as Pins;
const CLAUDE = PINS.npm["@anthropic-ai/claude-code"].version;
const CODEX = PINS.npm["@openai/codex"].version;

const stageOf = (run: BuildRun, name: string) => run.report.stages.find((s) => s.name === name);
const durations = (run: BuildRun) =>
  run.report.stages.map((s) => `${s.name} ${"durationMs" in s ? `${s.durationMs} ms` : s.outcome}`).join(", ");

/** A real pairing, as a browser makes one: serve, create a credential, turn it into a t3_session cookie. */
const PAIRING_SCRIPT = String.raw`
const { spawn, execFileSync } = require("node:child_process");
const dir = require("node:fs").mkdtempSync("/tmp/pairing-");
// A port the kernel says is free: the test boxes share the host's network, and a
// random one may be another connection's (CI once drew 35872, in the ephemeral range).
const freePort = () => new Promise((resolve) => { const probe = require("node:net").createServer().listen(0, "127.0.0.1", () => { const { port } = probe.address(); probe.close(() => resolve(port)); }); });
let server;
(async () => {
  const port = await freePort();
  server = spawn("t3", ["serve", "--host", "127.0.0.1", "--port", String(port), "--base-dir", dir], { stdio: "ignore" });
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    try { up = (await fetch("http://127.0.0.1:" + port + "/")).status === 200; } catch {}
    if (!up) await new Promise((r) => setTimeout(r, 200));
  }
  if (!up) throw new Error("t3 serve did not answer GET / on port " + port + " within 20 s");
  const { credential } = JSON.parse(execFileSync("t3", ["auth", "pairing", "create", "--base-dir", dir, "--ttl", "5m", "--json"], { encoding: "utf8" }));
  const answer = await fetch("http://127.0.0.1:" + port + "/api/auth/browser-session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ credential }) });
  console.log(answer.status, answer.headers.getSetCookie().map((c) => c.split("=")[0]).join(","));
})().finally(() => server?.kill());
`;

describe("npm CLIs from a registry stand-in on a booted box of the test release", () => {
  let registry: RegistryStandIn;
  let vm: DevvmContainer;
  let env: Record<string, string>;
  let inputs: string;
  let first: BuildRun;

  beforeAll(async () => {
    [registry, vm] = await Promise.all([startRegistryStandIn(), startFreshVm()]);
    env = { DEVVM_NPM_REGISTRY: registry.url };
    const pins = structuredClone(PINS);
    pins.npm.t3 = { version: T3_HEALTHY, integrity: await registry.integrityOf("t3", T3_HEALTHY) };
    inputs = await writeInputs(vm, "/opt/devvm-inputs/pinned", pins);
    first = await buildIn(vm, env, "--stage", STAGES, "--inputs", inputs);
    process.stderr.write(`first build in ${vm.id.slice(0, 12)} (${durations(first)}):\n${first.log}`);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await registry?.stop();
  });

  it("installs each CLI at its pin, behind a /usr/local/bin link into its versioned prefix", async () => {
    expect(first.exitCode, first.log).toBe(0);
    expect((await vm.exec("claude --version", { check: true })).stdout).toContain(`${CLAUDE} (Claude Code)`);
    expect((await vm.exec("codex --version", { check: true })).stdout.trim()).toBe(`codex-cli ${CODEX}`);
    expect((await vm.exec("t3 --version", { check: true })).stdout.trim()).toBe(`t3 v${T3_HEALTHY}`);
    expect(await vm.stat("/usr/local/bin/claude")).toMatchObject({
      type: "symlink",
      linkTarget: `/opt/devvm/npm/@anthropic-ai+claude-code/${CLAUDE}/bin/claude`,
    });
    expect(await vm.stat("/usr/local/bin/codex")).toMatchObject({
      type: "symlink",
      linkTarget: `/opt/devvm/npm/@openai+codex/${CODEX}/bin/codex`,
    });
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      type: "symlink",
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY}/bin/t3`,
    });
    expect(stageOf(first, "t3")).toMatchObject({
      outcome: "changed",
      changes: [{ kind: "package", name: "t3", from: null, to: T3_HEALTHY }],
    });
  });

  it("works for a user who is not root", async () => {
    const asNobody = (command: string) =>
      vm.exec(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "sh", "-c", command]);
    expect((await asNobody("t3 --version")).stdout.trim()).toBe(`t3 v${T3_HEALTHY}`);
    expect((await asNobody("codex --version")).stdout.trim()).toBe(`codex-cli ${CODEX}`);
    expect((await asNobody("claude --version")).stdout).toContain(CLAUDE);
  });

  it("records the versions in the manifest", async () => {
    const manifest = JSON.parse(await vm.readFile(`${PROJECT_DIR_IN_CONTAINER}/output/manifest.json`)) as {
      packages: Array<{ name: string; version: string }>;
    };
    const npm = manifest.packages.filter((p) => p.name.startsWith("npm:"));
    expect(npm).toEqual([
      { name: "npm:@anthropic-ai/claude-code", version: CLAUDE, stage: "claude-code" },
      { name: "npm:@openai/codex", version: CODEX, stage: "codex" },
      { name: "npm:t3", version: T3_HEALTHY, stage: "t3" },
    ]);
  });

  it("is a no-op the second time: every stage unchanged, and not one request to the registry", async () => {
    registry.clearRequests();
    const second = await buildIn(vm, env, "--stage", STAGES, "--inputs", inputs);
    process.stderr.write(`second build: ${durations(second)}\n`);
    expect(second.exitCode, second.log).toBe(0);
    expect(nonIdempotentStages(second.report), second.log).toEqual([]);
    expect(registry.requests()).toEqual([]);
  });

  it("keeps 0.0.26 when 0.0.27 fails its health check, and fails the build naming the check", async () => {
    const pins = structuredClone(PINS);
    pins.npm.t3 = {
      version: T3_BROKEN,
      integrity: await registry.integrityOf("t3", T3_BROKEN),
      approved: "container test: the bad nightly",
    };
    const moved = await writeInputs(vm, "/opt/devvm-inputs/t3-broken", pins);
    const build = await buildIn(vm, env, "--stage", "t3", "--inputs", moved);
    process.stderr.write(`build with t3 ${T3_BROKEN}: ${durations(build)}\n${build.log}`);

    expect(build.exitCode, build.log).toBe(1);
    const t3 = stageOf(build, "t3");
    expect(t3?.outcome).toBe("failed");
    const message = t3 && "error" in t3 ? t3.error.message : "";
    expect(message).toContain(`t3 ${T3_BROKEN} failed its health check (browser session)`);
    expect(message).toContain(
      "POST /api/auth/browser-session answered 404, then POST /api/auth/bootstrap answered 404",
    );
    expect(message).toContain(`t3 ${T3_HEALTHY} stays active`);

    expect((await vm.exec("t3 --version", { check: true })).stdout.trim()).toBe(`t3 v${T3_HEALTHY}`);
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({ linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY}/bin/t3` });
    expect((await vm.exec("ls -A /opt/devvm/npm/t3", { check: true })).stdout.split("\n").filter(Boolean)).toEqual([
      T3_HEALTHY,
    ]);
    // The health check cleans up after itself: no t3 left running, no throwaway dir.
    const commandLines = await vm.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done");
    expect(commandLines.stdout.split("\n").filter((l) => l.includes(" serve --host"))).toEqual([]);
    expect((await vm.exec("ls -d /tmp/devvm-t3-health-* 2>/dev/null")).stdout.trim()).toBe("");
    expect((await vm.exec(["/usr/local/bin/node", "-e", PAIRING_SCRIPT], { check: true })).stdout.trim()).toBe(
      "200 t3_session",
    );
  });

  it("reports a tampered integrity in claude-code's stage, though npm ran while apt did, and leaves nothing of it or of the CLI after it", async () => {
    // Neither installed; apt has one package to install, and the CLIs are prepared meanwhile.
    await vm.exec(
      `apt-get purge -y -q tree >/dev/null && rm -rf /opt/devvm/npm/@anthropic-ai+claude-code /opt/devvm/npm/@openai+codex /usr/local/bin/claude /usr/local/bin/codex`,
      { check: true },
    );
    const pins = structuredClone(PINS);
    pins.npm.t3 = { version: T3_HEALTHY, integrity: await registry.integrityOf("t3", T3_HEALTHY) };
    const served = pins.npm["@anthropic-ai/claude-code"].integrity!;
    const digest = Buffer.from(served.slice("sha512-".length), "base64");
    digest[0]! ^= 1;
    const tampered = `sha512-${digest.toString("base64")}`;
    pins.npm["@anthropic-ai/claude-code"] = { ...pins.npm["@anthropic-ai/claude-code"], integrity: tampered };
    const release = TEST_RELEASE as keyof Pins["apt"];
    pins.apt = { [release]: { tree: pins.apt[release]!.tree! } };
    const inputs = await writeInputs(vm, "/opt/devvm-inputs/claude-tampered", pins);
    await vm.exec(`echo tree > ${inputs}/packages.txt`, { check: true });

    const build = await buildIn(vm, env, "--stage", `apt,${STAGES}`, "--inputs", inputs);
    process.stderr.write(`build with claude-code's integrity tampered: ${durations(build)}\n${build.log}`);
    expect(build.exitCode, build.log).toBe(1);
    expect(build.report.stages.map((s) => `${s.name} ${s.outcome}`)).toEqual([
      "preflight unchanged",
      "apt changed",
      "node unchanged",
      "claude-code failed",
      "t3 not-run",
      "codex not-run",
    ]);
    const failed = stageOf(build, "claude-code");
    expect(failed && "error" in failed ? failed.error.message : "").toContain(
      `pins.json has integrity ${tampered}, the registry serves ${served}; nothing was installed`,
    );
    // codex's install began while apt ran (its line carries its stage's name there), before claude-code's turn.
    const aptBlock = build.log.slice(build.log.indexOf("  apt:"), build.log.search(/^ {2}apt {2,}changed/m));
    expect(aptBlock).toContain(`[codex] npm install @openai/codex@${CODEX}`);

    expect((await vm.exec("ls -la /usr/local/bin/claude /usr/local/bin/codex")).stdout).toBe("");
    // No version, no staging folder: what was made in the background for codex is gone with the build.
    expect(
      (
        await vm.exec("ls -A /opt/devvm/npm/@anthropic-ai+claude-code /opt/devvm/npm/@openai+codex 2>/dev/null; true")
      ).stdout
        .split("\n")
        .filter((l) => l && !l.endsWith(":")),
    ).toEqual([]);
    const npmRunning = await vm.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done");
    expect(npmRunning.stdout.split("\n").filter((l) => l.includes("npm-cli.js install"))).toEqual([]);
  });
});
