// The devvm's promises, proven on a booted Debian 12: a from-scratch build,
// idempotence (Molecule's bar: a rerun changes nothing), reproducibility
// (a second fresh box yields the same manifest) and partial reruns. Every
// check looks at the box from outside, never at the builder's own report.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffManifests, formatDifferences } from "../lib/manifest-diff.ts";
import type { DevvmContainer } from "./container/devvm-container.ts";
import { buildIn, manifestIn, nonIdempotentStages, PROJECT_DIR, startFreshVm, type BuildRun } from "./build-in-vm.ts";

const repoFile = (p: string) => readFileSync(path.join(PROJECT_DIR, "files", p), "utf8");

describe("a from-scratch build on a booted Debian 12", () => {
  let vm: DevvmContainer;
  let first: BuildRun;

  beforeAll(async () => {
    vm = await startFreshVm();
    const state = (await vm.exec("systemctl is-system-running")).stdout.trim();
    const init = (await vm.readFile("/proc/1/comm")).trim();
    process.stderr.write(`container ${vm.id.slice(0, 12)}: PID 1 is ${init}, systemctl is-system-running = ${state}\n`);
    expect([init, state]).toEqual(["systemd", "running"]);
    first = await buildIn(vm);
    process.stderr.write(`first build in ${vm.id.slice(0, 12)}:\n${first.log}`);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("succeeds", () => {
    expect(first.exitCode, first.log).toBe(0);
  });

  it("installs the managed Claude Code settings", async () => {
    expect(await vm.stat("/etc/claude-code")).toEqual({ type: "directory", mode: "0755", owner: "root", group: "root" });
    expect(await vm.stat("/etc/claude-code/managed-settings.json")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });
    const settings = JSON.parse(await vm.readFile("/etc/claude-code/managed-settings.json"));
    expect(settings.model).toBe("claude-fable-5");
    expect(await vm.readFile("/etc/claude-code/managed-settings.json")).toBe(repoFile("claude-code/managed-settings.json"));
  });

  it("sets up /etc/skel, linking only the shared folders that exist", async () => {
    expect(await vm.stat("/etc/skel/start-claude.sh")).toEqual({ type: "file", mode: "0755", owner: "root", group: "root" });
    expect(await vm.stat("/etc/skel/.tmux.conf")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });
    expect(await vm.stat("/etc/skel/.claude/skills")).toMatchObject({ type: "symlink", linkTarget: "/home/wizard/.claude/skills" });
    expect(await vm.stat("/etc/skel/.claude/rules")).toMatchObject({ type: "symlink", linkTarget: "/home/wizard/.claude/rules" });
    expect((await vm.exec("ls -A /etc/skel/.claude")).stdout.split("\n").filter(Boolean).sort()).toEqual(["rules", "skills"]);
    // The launcher never forces a model: the managed default must win.
    const code = (await vm.readFile("/etc/skel/start-claude.sh")).split("\n").filter((l) => !/^\s*#/.test(l));
    expect(code.join("\n")).toContain("exec claude");
    expect(code.join("\n")).not.toMatch(/--model/);
    expect((await vm.exec("bash -n /etc/skel/start-claude.sh")).exitCode).toBe(0);
  });

  it("closes the admin's code tree to other users", async () => {
    expect(await vm.stat("/home/wizard/code")).toMatchObject({ type: "directory", mode: "0770" });
    const other = await vm.exec(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls", "/home/wizard/code"]);
    expect(other.exitCode).not.toBe(0);
    expect(other.stderr).toMatch(/Permission denied/);
  });

  it("is idempotent: a second build changes nothing and yields a byte-identical manifest", async () => {
    const before = await manifestIn(vm);
    const mtimes = (await vm.exec("stat -c '%n %Y' /etc/claude-code/managed-settings.json /etc/skel/start-claude.sh /etc/skel/.tmux.conf")).stdout;
    const second = await buildIn(vm);
    expect(second.exitCode, second.log).toBe(0);
    expect(nonIdempotentStages(second.report), `stages that changed something on the rerun:\n${second.log}`).toEqual([]);
    const after = await manifestIn(vm);
    expect(formatDifferences(diffManifests(before.manifest, after.manifest), ["first build", "second build"])).toBe("");
    expect(after.text).toBe(before.text);
    expect((await vm.exec("stat -c '%n %Y' /etc/claude-code/managed-settings.json /etc/skel/start-claude.sh /etc/skel/.tmux.conf")).stdout).toBe(mtimes);
  });

  it("reruns one stage alone, and --plan finds a hand edit", async () => {
    const only = await buildIn(vm, "--stage", "skel");
    expect(only.exitCode, only.log).toBe(0);
    expect(only.report.stages.map((s) => s.name)).toEqual(["preflight", "skel"]);

    await vm.exec("echo 'set -g mouse off' >> /etc/skel/.tmux.conf", { check: true });
    const plan = await buildIn(vm, "--plan");
    expect(plan.exitCode).toBe(3);
    expect(plan.log).toContain("update /etc/skel/.tmux.conf");
    expect(plan.log).toContain("-set -g mouse off");
    expect(await vm.readFile("/etc/skel/.tmux.conf")).toContain("mouse off");

    const restore = await buildIn(vm, "--stage", "skel");
    expect(restore.exitCode).toBe(0);
    expect(await vm.readFile("/etc/skel/.tmux.conf")).toBe(repoFile("skel/.tmux.conf"));
  });

  it("is reproducible: a build on a second fresh box yields a byte-identical manifest", async () => {
    const reference = await manifestIn(vm);
    await using other = await startFreshVm();
    const build = await buildIn(other);
    expect(build.exitCode, build.log).toBe(0);
    const theirs = await manifestIn(other);
    expect(formatDifferences(diffManifests(reference.manifest, theirs.manifest), ["box 1", "box 2"])).toBe("");
    expect(theirs.sha256).toBe(reference.sha256);
  });
});
