// `apt-get update`, for the apt stage and the lock alike. It exits 0 on many
// fetch failures (a mirror unreachable, a name that does not resolve),
// printing `W: Failed to fetch ...`: the lists are then an earlier update's,
// or none, and "the mirror offers no version" would blame the wrong thing.
import type { BuildContext } from "../core/context.ts";
import { run } from "./exec.ts";

/** apt and dpkg alike: no prompt, and messages in English (they are matched). */
export const APT_ENV = { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" };

/** The lines of apt-get update's stderr that say the lists could not be fetched. */
function updateProblems(stderr: string): string | null {
  const problems = stderr.split("\n").filter((l) => /^(E: |W: Failed to fetch |W: Some index files failed)/.test(l));
  return problems.length > 0 ? problems.join("\n") : null;
}

/** Runs apt-get update (with apt's `options`); returns its fetch failures (null when none). A non-zero exit throws CommandError. */
export async function updatePackageLists(
  ctx: Pick<BuildContext, "log">,
  options: string[] = [],
): Promise<string | null> {
  const { stderr } = await run(ctx, "apt-get", [...options, "update", "-q"], {
    env: APT_ENV,
    heartbeat: { label: "apt-get update" },
  });
  return updateProblems(stderr);
}
