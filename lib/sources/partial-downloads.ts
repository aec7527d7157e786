// Partial downloads (`<hex>.part-PID`) that a killed build left in the
// cache: removed before the first download of the next.
import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { SessionSlot } from "../core/build-session.ts";
import type { BuildContext } from "../core/context.ts";
import { processRuns } from "../machine/leftovers.ts";

// The sweep of each cache folder, once per build.
const SWEEPS = new SessionSlot(() => new Map<string, Promise<void>>());
// No download is silent this long (undici gives up on a body after a minute): its writer is gone, whatever runs under its pid now.
const PARTIAL_STALE_MS = 60 * 60_000;

/**
 * Removes the partial downloads a killed build (or bootstrap.sh) left in the
 * cache, once per build and before its first download: every
 * `<algorithm>/*.part-PID` whose process no longer runs. One with a live pid
 * is kept (a `build.ts lock` beside a build), unless nothing wrote to it for
 * an hour (the pid was reused).
 */
export function sweepPartials(ctx: Pick<BuildContext, "cacheDir" | "log" | "session">): Promise<void> {
  const sweeps = ctx.session.get(SWEEPS);
  let sweep = sweeps.get(ctx.cacheDir);
  if (!sweep) {
    sweep = removeStalePartials(ctx);
    sweeps.set(ctx.cacheDir, sweep);
  }
  return sweep;
}

async function removeStalePartials(ctx: Pick<BuildContext, "cacheDir" | "log">): Promise<void> {
  const removed: string[] = [];
  for (const folder of await readdir(ctx.cacheDir).catch(() => [])) {
    for (const name of await readdir(path.join(ctx.cacheDir, folder)).catch(() => [])) {
      const pid = Number(/\.part-(\d+)$/.exec(name)?.[1]);
      if (!pid) continue;
      const file = path.join(ctx.cacheDir, folder, name);
      if (!(await partialIsStale(file, pid))) continue;
      await rm(file, { recursive: true, force: true });
      removed.push(path.join(folder, name));
    }
  }
  if (removed.length > 0)
    ctx.log.info(
      `removed ${removed.length} partial download${removed.length === 1 ? "" : "s"} a killed build left in ${ctx.cacheDir}: ${removed.join(", ")}`,
    );
}

async function partialIsStale(file: string, pid: number): Promise<boolean> {
  // This process has written nothing yet: a partial under its pid is a dead process's, the pid reused.
  if (pid === process.pid || !processRuns(pid)) return true;
  const modified = await stat(file).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  return Date.now() - modified > PARTIAL_STALE_MS;
}
