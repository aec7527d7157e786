import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import { endOrphans, recordChildrenIn, stopRecordingChildren } from "../lib/machine/children.ts";
import { sweepPartials } from "../lib/sources/download.ts";
import { NODE_ROOT, NPM_CLI_ROOT } from "../lib/machine/layout.ts";
import { LEFTOVERS, removeLeftovers } from "../lib/machine/leftovers.ts";
import { takeBuildLock } from "../lib/core/build-lock.ts";
import type { Stage } from "../lib/core/stage.ts";

/** The build lock: one build at a time (lib/core/build-lock.ts). */
export const BUILD_LOCK_PATH = "/run/lock/devvm-build.lock";
/** The process groups of the build that holds the build lock (lib/machine/children.ts). */
export const CHILDREN_PATH = "/run/lock/devvm-build.children.json";

/** Not root: build.ts gives it its own exit code, in one line. */
export class NotRootError extends UserError {
  override name = "NotRootError";
  constructor(uid: number | undefined) {
    super(`build.ts must run as root, not as uid ${uid ?? "unknown"}: run it again as root, e.g. with sudo`);
  }
}

/** Refuses every uid but 0. build.ts asks first, before anything is read or written; preflight asks again. */
export function requireRoot(uid: number | undefined): void {
  if (uid !== 0) throw new NotRootError(uid);
}

export default {
  name: "preflight",
  description:
    "Refuses to build unless root on a supported release (Debian 13, Ubuntu 24.04, Debian 12); takes the one-build-at-a-time lock",
  always: true,
  async check(ctx) {
    requireRoot(process.getuid?.());
    // The release was read, and an unsupported one refused, when the build's context was made
    // (ctx.release, lib/cli/run-pipeline.ts): before any stage, this one too.
    // --plan under --root writes nothing, not even a build lock file in that root;
    // on the machine itself it takes the build lock, so it never reads a build's half-written state.
    if (ctx.planOnly && underRoot(ctx)) return { changes: [], managed: [] };
    const lock = takeBuildLock(hostPath(ctx, BUILD_LOCK_PATH));
    if (lock.takenOverFrom)
      ctx.log.info(`took over the lock left by pid ${lock.takenOverFrom}, which is no longer running`);
    // A plan only reads: what a killed build left running is ended by the next build, not by a plan.
    if (!ctx.planOnly) {
      const ended = await endOrphans(hostPath(ctx, CHILDREN_PATH));
      if (ended.length > 0) ctx.log.info(`ended what a killed build left running: ${ended.join("; ")}`);
      if (lock.takenOverFrom !== undefined || ended.length > 0) await removeHalfMade(ctx);
      recordChildrenIn(hostPath(ctx, CHILDREN_PATH));
    }
    ctx.cleanups.push(() => {
      if (!ctx.planOnly) stopRecordingChildren();
      lock.release();
    });
    return { changes: [], managed: [] };
  },
  async apply() {
    return [];
  },
} satisfies Stage;

/** After a killed build: its half-made work everywhere, not only where this build makes the same thing again. */
async function removeHalfMade(ctx: BuildContext): Promise<void> {
  for (const kind of [LEFTOVERS.t3Health, LEFTOVERS.unitCheck, LEFTOVERS.goBuild, LEFTOVERS.aptSnapshot])
    await removeLeftovers(ctx, tmpdir(), kind);
  await removeLeftovers(ctx, hostPath(ctx, NODE_ROOT), LEFTOVERS.nodeTree);
  const cliRoot = hostPath(ctx, NPM_CLI_ROOT);
  for (const cli of await readdir(cliRoot).catch(() => [] as string[]))
    await removeLeftovers(ctx, path.join(cliRoot, cli), LEFTOVERS.npmStaging);
  await sweepPartials(ctx);
}
