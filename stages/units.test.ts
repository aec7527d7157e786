import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { UserError } from "../lib/core/errors.ts";
import type { Stage } from "../lib/core/stage.ts";
import { makeTestRoot } from "../test/support/test-context.ts";
import unitsStage, { requireUnitPrograms, unitPrograms } from "./units.ts";

const units: Stage = unitsStage;
const hasSystemd = spawnSync("systemd-analyze", ["--version"]).status === 0;

/** The commands the units run, as the earlier stages leave them in the root. */
function withCommands(dir: string, names: string[]): void {
  mkdirSync(path.join(dir, "usr/local/bin"), { recursive: true });
  for (const name of names) writeFileSync(path.join(dir, "usr/local/bin", name), "#!/bin/sh\n", { mode: 0o755 });
}

function logged(root: { ctx: object }): string[] {
  const lines: string[] = [];
  Object.assign(root.ctx, { log: { info: (m: string) => lines.push(m), debug: () => {} } });
  return lines;
}

describe.skipIf(!hasSystemd)("units under --root", () => {
  it("installs the verified units 0644 and enables dispatch, the timers and tmux-persist's restore offline, starting nothing", async () => {
    using root = makeTestRoot();
    const lines = logged(root);
    withCommands(root.dir, ["node", "t3", "t3-state-backup", "t3-watchdog", "tmux-persist", "t3-dispatch"]);
    const check = await units.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    const changes = await units.apply(root.ctx, check);
    expect(lines).toContain(`not started: the build manages ${root.dir} (--root), not a running system`);
    const descriptions = changes
      .filter((c) => c.kind === "action")
      .map((c) => (c.kind === "action" ? c.description : ""));
    expect(descriptions).toEqual([
      "enable devvm-reconcile.timer",
      "enable devvm-t3-pin.timer",
      "enable t3-dispatch.service",
      "enable t3-migrate-idle.timer",
      "enable t3-state-backup.timer",
      "enable t3-watchdog.timer",
      "enable tmux-persist-restore.service",
      "enable tmux-persist-save.timer",
    ]);

    const unitDir = path.join(root.dir, "etc/systemd/system");
    // Byte for byte, but for the user's memory cap, filled in t3-serve@.service (the default: a share of memory).
    for (const name of readdirSync(path.join(root.ctx.repoDir, "files/service/units"))) {
      expect(readFileSync(path.join(unitDir, name), "utf8")).toBe(
        readFileSync(path.join(root.ctx.repoDir, "files/service/units", name), "utf8").replace(
          "@USER_MEMORY_MAX@",
          "77%",
        ),
      );
    }
    expect(readFileSync(path.join(unitDir, "t3-serve@.service"), "utf8")).toMatch(
      /^MemoryHigh=infinity\nMemoryMax=77%\nMemorySwapMax=0\nOOMPolicy=continue$/m,
    );
    expect(readlinkSync(path.join(unitDir, "timers.target.wants/devvm-t3-pin.timer"))).toBe(
      "/etc/systemd/system/devvm-t3-pin.timer",
    );
    expect(readlinkSync(path.join(unitDir, "multi-user.target.wants/t3-dispatch.service"))).toBe(
      "/etc/systemd/system/t3-dispatch.service",
    );
    // The oneshots run only from their timers; tmux-persist's restore at boot.
    expect(existsSync(path.join(unitDir, "multi-user.target.wants/devvm-t3-pin.service"))).toBe(false);
    expect(readlinkSync(path.join(unitDir, "multi-user.target.wants/tmux-persist-restore.service"))).toBe(
      "/etc/systemd/system/tmux-persist-restore.service",
    );

    expect(await units.check(root.ctx)).toMatchObject({ changes: [] });
  });

  it("leaves t3-dispatch.service out, with a warning, until its binary is built", async () => {
    using root = makeTestRoot();
    const lines = logged(root);
    withCommands(root.dir, ["node", "t3", "t3-state-backup", "t3-watchdog", "tmux-persist"]);
    const check = await units.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    await units.apply(root.ctx, check);
    expect(lines).toContain("warning: t3-dispatch.service is left out until /usr/local/bin/t3-dispatch is built");
    expect(existsSync(path.join(root.dir, "etc/systemd/system/t3-dispatch.service"))).toBe(false);
    expect(existsSync(path.join(root.dir, "etc/systemd/system/devvm-t3-pin.timer"))).toBe(true);
  });

  it("installs none of the units when systemd-analyze verify prints anything", async () => {
    using root = makeTestRoot();
    withCommands(root.dir, ["node", "t3", "t3-state-backup", "t3-watchdog", "tmux-persist", "t3-dispatch"]);
    const repo = path.join(root.dir, "repo");
    cpSync(path.join(root.ctx.repoDir, "files/service/units"), path.join(repo, "files/service/units"), {
      recursive: true,
    });
    const timer = path.join(repo, "files/service/units/devvm-t3-pin.timer");
    writeFileSync(timer, readFileSync(timer, "utf8").replace("OnCalendar=", "OnCalender="));
    Object.assign(root.ctx, { repoDir: repo });
    const check = await units.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    await expect(units.apply(root.ctx, check)).rejects.toThrow(
      /systemd-analyze verify refused the units; none was installed:\n.*devvm-t3-pin.timer.*OnCalender/s,
    );
    expect(existsSync(path.join(root.dir, "etc/systemd/system"))).toBe(false);
  });
});

describe("units, when a program they run is missing", () => {
  const repo = path.dirname(path.dirname(new URL(import.meta.url).pathname));
  const files = readdirSync(path.join(repo, "files/service/units")).map((name) => ({
    path: `/etc/systemd/system/${name}`,
    content: readFileSync(path.join(repo, "files/service/units", name), "utf8"),
  }));
  const installed = [
    "/usr/local/bin/claude-auth-sync",
    "/usr/local/bin/node",
    "/usr/local/bin/t3",
    "/usr/local/bin/t3-dispatch",
    "/usr/local/bin/t3-state-backup",
    "/usr/local/bin/t3-watchdog",
    "/usr/local/bin/tmux-persist",
  ];
  const thrown = (missing: string[]) => {
    try {
      requireUnitPrograms(files, (p) => !missing.includes(p));
    } catch (error) {
      return error as UserError;
    }
    throw new Error("requireUnitPrograms did not throw");
  };

  it("reads each unit's program, t3 behind /usr/bin/env too (which verify cannot see)", () => {
    const programs = unitPrograms(files);
    expect([...programs.keys()].sort()).toEqual(installed);
    expect(programs.get("/usr/local/bin/t3")).toEqual({ units: ["t3-serve@.service"], wrapped: true });
    expect(programs.get("/usr/local/bin/claude-auth-sync")).toEqual({
      units: ["claude-auth-sync@.service"],
      wrapped: true,
    });
    expect(programs.get("/usr/local/bin/node")).toEqual({
      units: ["devvm-reconcile.service", "devvm-t3-pin.service", "t3-migrate-idle.service"],
      wrapped: false,
    });
  });

  it("blames the missing program and the stage that installs it, not the unit files", () => {
    const error = thrown(["/usr/local/bin/node", "/usr/local/bin/t3"]);
    expect(error.message).toBe(
      [
        "node is not installed: /usr/local/bin/node, which devvm-reconcile.service and devvm-t3-pin.service and t3-migrate-idle.service run, is missing",
        "t3 is not installed: /usr/local/bin/t3, which t3-serve@.service runs, is missing",
        "no unit was installed",
      ].join("\n"),
    );
    expect(error.hint).toBe(
      "the unit files are fine: run the node, t3 stages first (e.g. `build.ts --from node`), or fix why it failed",
    );
    expect(thrown(["/usr/local/bin/tmux-persist"]).hint).toBe(
      "the unit files are fine: run the service-helpers stage first (e.g. `build.ts --from service-helpers`), or fix why it failed",
    );
  });

  it("only warns about a missing t3: t3-serve@ is a template, started by the instances stage", () => {
    expect(requireUnitPrograms(files, (p) => p !== "/usr/local/bin/t3")).toEqual([
      "warning: t3 is not installed: /usr/local/bin/t3, which t3-serve@.service runs, is missing; t3-serve@.service cannot start until the t3 stage installs it",
    ]);
    expect(requireUnitPrograms(files, () => true)).toEqual([]);
  });
});
