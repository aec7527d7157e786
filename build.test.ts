// The CLI end to end, on a temporary --root (the container tests under
// test/ do the same on a booted Debian). What it refuses before any stage:
// lib/cli/refusals.test.ts; hostile inputs and a hostile Vault:
// lib/cli/hostile-*.test.ts; the lock command: lib/cli/commands/lock-cli.test.ts.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXIT } from "./lib/cli/exit-code.ts";
import { stages } from "./stages/index.ts";
import { build, makeRootAndOutput, mtimes, removeDirs } from "./test/support/cli.ts";

// The stages that only write files; those that download or install software
// are proven in the container tests, against the stand-ins.
const FILE_STAGES = ["managed-settings", "skel", "harden-admin-tree"].join(",");

describe("build.ts", () => {
  let root: string;
  let output: string;
  beforeEach(() => void ({ root, output } = makeRootAndOutput()));
  afterEach(() => removeDirs(root, output));

  it("--list prints the stages in pipeline order with their descriptions", () => {
    const { code, stdout } = build("--list");
    expect(code).toBe(EXIT.ok);
    const lines = stdout.trim().split("\n");
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(stages.map((s) => s.name));
    expect(lines[0]).toContain(stages[0]!.description);
  });

  it("--help prints the usage on stdout and exits 0", () => {
    const { code, stdout, stderr } = build("--help");
    expect(code).toBe(EXIT.ok);
    expect(stdout).toMatch(/^Usage: build\.ts \[options\]\n/);
    expect(stdout).toContain(`${EXIT.notRoot} not run as root`);
    expect(stderr).toBe("");
  });

  it("applies the stages, then changes nothing on a rerun; --plan finds a hand edit, the next run restores it", () => {
    const first = build("--root", root, "--output", output, "--json", "--stage", FILE_STAGES);
    expect(first.code, first.stderr).toBe(EXIT.ok);
    const report = JSON.parse(first.stdout);
    expect(report.stages.find((s: { name: string }) => s.name === "skel").outcome).toBe("changed");
    expect(statSync(path.join(root, "etc/skel/start-claude.sh")).mode & 0o7777).toBe(0o755);
    const manifest = readFileSync(path.join(output, "manifest.json"), "utf8");

    const before = mtimes(root);
    const second = build("--root", root, "--output", output, "--json", "--stage", FILE_STAGES);
    expect(second.code).toBe(EXIT.ok);
    const outcomes = JSON.parse(second.stdout).stages.map((s: { outcome: string }) => s.outcome);
    expect(new Set(outcomes)).toEqual(new Set(["unchanged", "skipped"]));
    expect(mtimes(root)).toEqual(before);
    expect(readFileSync(path.join(output, "manifest.json"), "utf8")).toBe(manifest);

    const tmux = path.join(root, "etc/skel/.tmux.conf");
    writeFileSync(tmux, `${readFileSync(tmux, "utf8")}set -g mouse off\n`);
    const plan = build("--root", root, "--output", output, "--plan", "--stage", FILE_STAGES);
    expect(plan.code).toBe(EXIT.changesPending);
    expect(plan.stderr).toContain("-set -g mouse off");
    const updates = plan.stderr.split("\n").filter((l) => /^\s+(update|create|mode|owner) /.test(l));
    expect(updates.map((l) => l.trim())).toEqual(["update /etc/skel/.tmux.conf"]);
    expect(readFileSync(tmux, "utf8")).toContain("mouse off");

    expect(build("--root", root, "--output", output, "--stage", FILE_STAGES).code).toBe(EXIT.ok);
    expect(readFileSync(tmux, "utf8")).not.toContain("mouse off");
    expect(build("--root", root, "--output", output, "--plan", "--stage", FILE_STAGES).code).toBe(EXIT.ok);
  });

  it("runs only the named stage and refuses an unknown one", () => {
    const only = build("--root", root, "--output", output, "--stage", "skel", "--json");
    expect(only.code).toBe(EXIT.ok);
    expect(JSON.parse(only.stdout).stages.map((s: { name: string }) => s.name)).toEqual(["preflight", "skel"]);
    expect(readdirSync(path.join(root, "etc"))).toEqual(["skel"]);
    const unknown = build("--root", root, "--stage", "sekl");
    expect(unknown.code).toBe(EXIT.badInput);
    expect(unknown.stderr).toContain("valid stages, in order: preflight,");
  });

  it("--for-image leaves the stages that need the booted machine to the first boot, without checking them; --list marks them", () => {
    const run = build(
      "--root",
      root,
      "--output",
      output,
      "--stage",
      "skel,harden-admin-tree,users",
      "--for-image",
      "--json",
    );
    expect(run.code, run.stderr).toBe(EXIT.ok);
    const byName = Object.fromEntries(
      JSON.parse(run.stdout).stages.map((s: { name: string; outcome: string; reason?: string }) => [s.name, s]),
    );
    expect(byName.skel.outcome).toBe("changed");
    for (const name of ["harden-admin-tree", "users"])
      expect(byName[name]).toMatchObject({
        outcome: "skipped",
        reason: expect.stringMatching(/^left to the first boot of the image: /),
      });
    // Nothing of the skipped stages was made.
    expect(readdirSync(path.join(root, "etc"))).toEqual(["skel"]);
    const marked = build("--list")
      .stdout.split("\n")
      .filter((l) => l.includes("[first boot]"))
      .map((l) => l.split(/\s+/)[0]);
    expect(marked).toEqual(stages.filter((s) => s.firstBoot).map((s) => s.name));
    expect(marked).toEqual(expect.arrayContaining(["vault-tokens", "users", "units", "instances"]));
  });

  it("--plan under --root writes nothing there, not even the build lock", () => {
    const { code, stderr } = build("--root", root, "--output", output, "--plan", "--stage", "skel");
    expect(code, stderr).toBe(EXIT.changesPending);
    expect(readdirSync(root)).toEqual([]);
    expect(readdirSync(output)).toEqual([]);
  });
});
