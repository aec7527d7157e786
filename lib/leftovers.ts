// What a killed build leaves half-made: staging folders, scratch folders in
// /tmp. Each name carries the pid of the build that made it, so the next
// build that would make the same thing removes those whose build is gone
// (and never one in use by a running process: a test run, say), saying so.
import { promises as fs } from "node:fs";
import path from "node:path";
import type { BuildContext } from "./context.ts";

/** A scratch name under `dir` that leftovers() can find: PREFIX-PID-. */
export const scratchPrefix = (prefix: string) => `${prefix}${process.pid}-`;

/**
 * Removes the entries of `dir` named by `pattern` (its first group is the
 * pid of the build that made them) whose build no longer runs.
 */
export async function removeLeftovers(ctx: Pick<BuildContext, "log">, dir: string, pattern: RegExp, what: string): Promise<number> {
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((name) => {
    const pid = Number(pattern.exec(name)?.[1]);
    return pid > 0 && pid !== process.pid && !processRuns(pid);
  });
  for (const name of names) await fs.rm(path.join(dir, name), { recursive: true, force: true });
  if (names.length > 0) ctx.log.info(`removed ${names.length} ${what} a killed build left in ${dir}`);
  return names.length;
}

/** Whether a process with this pid runs now (as any user). */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
