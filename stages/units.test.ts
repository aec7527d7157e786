import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Stage } from "../lib/stage.ts";
import { makeTestRoot } from "../lib/test-context.ts";
import unitsStage from "./units.ts";

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
    withCommands(root.dir, ["node", "t3", "t3-state-backup", "tmux-persist", "t3-dispatch"]);
    const check = await units.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    const changes = await units.apply(root.ctx, check);
    expect(lines).toContain(`not started: the build manages ${root.dir} (--root), not a running system`);
    const descriptions = changes.filter((c) => c.kind === "action").map((c) => (c.kind === "action" ? c.description : ""));
    expect(descriptions).toEqual(["enable devvm-reconcile.timer", "enable devvm-t3-pin.timer", "enable t3-dispatch.service", "enable t3-state-backup.timer", "enable tmux-persist-restore.service", "enable tmux-persist-save.timer"]);

    const unitDir = path.join(root.dir, "etc/systemd/system");
    for (const name of readdirSync(path.join(root.ctx.repoDir, "files/service/units"))) {
      expect(readFileSync(path.join(unitDir, name), "utf8")).toBe(readFileSync(path.join(root.ctx.repoDir, "files/service/units", name), "utf8"));
    }
    expect(readlinkSync(path.join(unitDir, "timers.target.wants/devvm-t3-pin.timer"))).toBe("/etc/systemd/system/devvm-t3-pin.timer");
    expect(readlinkSync(path.join(unitDir, "multi-user.target.wants/t3-dispatch.service"))).toBe("/etc/systemd/system/t3-dispatch.service");
    // The oneshots run only from their timers; tmux-persist's restore at boot.
    expect(existsSync(path.join(unitDir, "multi-user.target.wants/devvm-t3-pin.service"))).toBe(false);
    expect(readlinkSync(path.join(unitDir, "multi-user.target.wants/tmux-persist-restore.service"))).toBe("/etc/systemd/system/tmux-persist-restore.service");

    expect(await units.check(root.ctx)).toMatchObject({ changes: [] });
  });

  it("leaves t3-dispatch.service out, with a warning, until its binary is built", async () => {
    using root = makeTestRoot();
    const lines = logged(root);
    withCommands(root.dir, ["node", "t3", "t3-state-backup", "tmux-persist"]);
    const check = await units.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    await units.apply(root.ctx, check);
    expect(lines).toContain("warning: t3-dispatch.service is left out until /usr/local/bin/t3-dispatch is built");
    expect(existsSync(path.join(root.dir, "etc/systemd/system/t3-dispatch.service"))).toBe(false);
    expect(existsSync(path.join(root.dir, "etc/systemd/system/devvm-t3-pin.timer"))).toBe(true);
  });

  it("installs none of the units when systemd-analyze verify prints anything", async () => {
    using root = makeTestRoot();
    withCommands(root.dir, ["node", "t3", "t3-state-backup", "tmux-persist", "t3-dispatch"]);
    const repo = path.join(root.dir, "repo");
    cpSync(path.join(root.ctx.repoDir, "files/service/units"), path.join(repo, "files/service/units"), { recursive: true });
    const timer = path.join(repo, "files/service/units/devvm-t3-pin.timer");
    writeFileSync(timer, readFileSync(timer, "utf8").replace("OnCalendar=", "OnCalender="));
    Object.assign(root.ctx, { repoDir: repo });
    const check = await units.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    await expect(units.apply(root.ctx, check)).rejects.toThrow(/systemd-analyze verify refused the units; none was installed:\n.*devvm-t3-pin.timer.*OnCalender/s);
    expect(existsSync(path.join(root.dir, "etc/systemd/system"))).toBe(false);
  });
});
