// systemd for stages: verifying unit files before they are installed,
// enabling and starting units, and the record of restarts still due.
// Without systemd as PID 1 (under --root, or a container without init),
// units are enabled offline (`systemctl --root=DIR enable` only makes the
// links) and nothing is started.
import { existsSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { hostPath, underRoot } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { run } from "./exec.ts";
import { writeFileAtomic } from "./files.ts";
import { STATE_DIR } from "./layout.ts";
import { LEFTOVERS, removeLeftovers, scratchPrefix } from "./leftovers.ts";

export const UNIT_DIR = "/etc/systemd/system";
/** Each user's t3 front end: t3-serve@USER.service. */
export const T3_SERVE_TEMPLATE = `${UNIT_DIR}/t3-serve@.service`;
export const t3ServeInstance = (user: string) => `t3-serve@${user}.service`;
/** Units whose restart was due when a build stopped; the next build does it. */
export const PENDING_RESTARTS = `${STATE_DIR}/pending-restarts.json`;

export interface UnitFile {
  /** The unit's real name, e.g. t3-serve@.service. */
  name: string;
  content: string | Buffer;
}

/** Why units cannot be started here, or undefined when systemd is PID 1 of this machine. */
export function offlineReason(ctx: Pick<BuildContext, "root">): string | undefined {
  if (underRoot(ctx)) return `not started: the build manages ${ctx.root} (--root), not a running system`;
  // sd_booted(): this folder exists only when systemd is PID 1.
  if (!existsSync("/run/systemd/system")) return "not started: systemd is not PID 1 here";
  return undefined;
}

/**
 * Runs `systemd-analyze verify` on the units, written under their real
 * names into one temporary folder (a timer finds its service there; another
 * name would make verify check something else). Any line it prints fails.
 */
export async function verifyUnits(ctx: BuildContext, units: UnitFile[]): Promise<void> {
  // A plan writes nothing, not even this cleanup.
  if (!ctx.planOnly) await removeLeftovers(ctx, tmpdir(), LEFTOVERS.unitCheck);
  const dir = await fs.mkdtemp(path.join(tmpdir(), scratchPrefix("devvm-units-")));
  try {
    for (const unit of units) await fs.writeFile(path.join(dir, unit.name), unit.content, { mode: 0o644 });
    const result = await run(
      ctx,
      "systemd-analyze",
      ["verify", "--man=no", "--generators=no", ...units.map((u) => path.join(dir, u.name))],
      { okCodes: [1] },
    );
    const problems = `${result.stdout}${result.stderr}`
      .split("\n")
      .filter((line) => line.trim() && !missingCommandUnderRoot(ctx, line))
      .map((line) => line.split(`${dir}/`).join(""));
    if (problems.length > 0 || (result.exitCode !== 0 && !underRoot(ctx))) {
      throw new UserError(
        `systemd-analyze verify refused the units; none was installed:\n${problems.join("\n")}`,
        "fix the unit files under files/service/",
      );
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

// verify looks for ExecStart= commands on this host, not in a --root; and
// there some come from stages that are skipped under --root (t3). A missing
// command is a fault of the machine, not of the unit, so it counts only here.
function missingCommandUnderRoot(ctx: BuildContext, line: string): boolean {
  return underRoot(ctx) && /Command \S+ is not executable/.test(line);
}

/** systemctl for the machine: offline with --root when systemd is not running it. */
export function systemctl(ctx: BuildContext, args: string[], okCodes: number[] = []) {
  const offline = offlineReason(ctx) !== undefined;
  return run(ctx, "systemctl", [...(offline ? [`--root=${ctx.root}`] : []), ...args], { okCodes });
}

/** Which of the units are enabled: one systemctl call for all of them. */
export async function enabledUnits(ctx: BuildContext, units: string[]): Promise<Set<string>> {
  return unitsInState(ctx, "is-enabled", "enabled", units);
}

/** Which of the units are active; only asked when systemd is running. */
export async function activeUnits(ctx: BuildContext, units: string[]): Promise<Set<string>> {
  return unitsInState(ctx, "is-active", "active", units);
}

async function unitsInState(ctx: BuildContext, verb: string, state: string, units: string[]): Promise<Set<string>> {
  if (units.length === 0) return new Set();
  const result = await systemctl(ctx, [verb, ...units], [1, 3, 4]);
  const lines = result.stdout.trim().split("\n");
  // One line per unit, in order; a unit systemctl cannot find may print none, then ask one by one.
  if (lines.length === units.length) return new Set(units.filter((_, i) => lines[i]!.trim() === state));
  const each = await Promise.all(
    units.map(async (unit) => ((await systemctl(ctx, [verb, unit], [1, 3, 4])).stdout.trim() === state ? [unit] : [])),
  );
  return new Set(each.flat());
}

export async function readPendingRestarts(ctx: BuildContext): Promise<string[]> {
  const text = await fs.readFile(hostPath(ctx, PENDING_RESTARTS), "utf8").catch(() => "[]");
  try {
    const parsed = JSON.parse(text) as unknown;
    return Array.isArray(parsed) ? parsed.filter((u): u is string => typeof u === "string") : [];
  } catch {
    return [];
  }
}

/** Replaces the record; an empty one removes the file. */
export async function writePendingRestarts(ctx: BuildContext, units: string[]): Promise<void> {
  const file = hostPath(ctx, PENDING_RESTARTS);
  const unique = [...new Set(units)].sort();
  if (unique.length === 0) return fs.rm(file, { force: true });
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, `${JSON.stringify(unique)}\n`, { mode: 0o644, uid: 0, gid: 0 });
}

export async function addPendingRestarts(ctx: BuildContext, units: string[]): Promise<void> {
  if (units.length > 0) await writePendingRestarts(ctx, [...(await readPendingRestarts(ctx)), ...units]);
}

/**
 * A unit the build started or restarted must still be up a moment later: a
 * service that exits at start (t3-dispatch without dispatch.json, t3 serve
 * unable to write its home) is a failure to show, with its journal, not a
 * start that quietly repeats on every run. Only services are watched: a
 * timer, once started, waits for its time and has nothing to exit from, so
 * starting only timers costs no wait.
 */
export async function requireStayedUp(ctx: BuildContext, started: string[], settleMs = 2000): Promise<void> {
  const units = started.filter((unit) => !unit.endsWith(".timer"));
  if (units.length === 0) return;
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const active = await activeUnits(ctx, units);
  const down = units.filter((unit) => !active.has(unit));
  if (down.length === 0) return;
  const logs = await Promise.all(
    down.map(
      async (unit) =>
        `${unit}:\n${(await run(ctx, "journalctl", ["-u", unit, "-n", "8", "--no-pager", "-o", "cat"], { okCodes: [1] })).stdout.trim()}`,
    ),
  );
  throw new UserError(
    `${down.join(", ")} did not stay up after starting:\n${logs.join("\n")}`,
    "see `journalctl -u UNIT`; the next build starts it again",
  );
}

/** The active services whose names match a systemctl pattern (`t3-serve@*.service`), by name. */
export async function activeServices(ctx: BuildContext, pattern: string): Promise<string[]> {
  const listed = await systemctl(ctx, [
    "list-units",
    "--type=service",
    "--state=active",
    "--plain",
    "--no-legend",
    pattern,
  ]);
  return listed.stdout
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0]!)
    .filter((unit) => unit.endsWith(".service"));
}

/** The t3-serve@ instances that run now (a changed template reaches them at their next idle restart). */
export async function activeT3ServeInstances(ctx: BuildContext): Promise<string[]> {
  return (await activeServices(ctx, "t3-serve@*.service")).filter((unit) => /^t3-serve@.+\.service$/.test(unit));
}
