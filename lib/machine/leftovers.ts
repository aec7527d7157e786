// What a killed build leaves half-made: staging folders, scratch folders in
// /tmp. Each name carries the pid of the build that made it, so the next
// build that would make the same thing removes those whose build is gone
// (and never one in use by a running process: a test run, say), saying so;
// a build that takes over a killed one's lock removes them all at once.
import { promises as fs } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";

/** A scratch name under `dir` that removeLeftovers can find: PREFIX-PID-. */
export const scratchPrefix = (prefix: string) => `${prefix}${process.pid}-`;

/** A kind of half-made work: its name's pattern (the first group is the pid of the build that made it), and what it is called. */
export interface Leftover {
  pattern: RegExp;
  what: string;
}

/** Every kind, for its maker and for the lock takeover (stages/preflight.ts). */
export const LEFTOVERS = {
  /** In /tmp (lib/tools/t3-health.ts). */
  t3Health: { pattern: /^devvm-t3-health-(\d+)-/, what: "base dir(s) of a t3 health check" },
  /** In /tmp (lib/machine/systemd.ts). */
  unitCheck: { pattern: /^devvm-units-(\d+)-/, what: "scratch folder(s) of a unit check" },
  /** In /tmp (lib/machine/apt-snapshot.ts). */
  aptSnapshot: { pattern: /^devvm-apt-snapshot-(\d+)-/, what: "scratch apt source folder(s) of a snapshot install" },
  /** In /tmp (stages/service-helpers.ts). */
  goBuild: { pattern: /^devvm-go-(\d+)-/, what: "scratch folder(s) of a t3-dispatch build" },
  /** In NODE_ROOT (stages/node.ts): .VERSION.tmp-PID-XXXXXX. */
  nodeTree: { pattern: /^\.[^/]+\.tmp-(\d+)-/, what: "unfinished Node tree(s)" },
  /** In each CLI's folder under NPM_CLI_ROOT (lib/tools/npm-global.ts): .staging-VERSION-PID. */
  npmStaging: { pattern: /^\.staging-.+-(\d+)$/, what: "unfinished npm install(s)" },
} satisfies Record<string, Leftover>;

/** Removes the entries of `dir` of this kind whose build no longer runs. */
export async function removeLeftovers(
  ctx: Pick<BuildContext, "log">,
  dir: string,
  { pattern, what }: Leftover,
): Promise<number> {
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
