// The gate a t3 version change passes (docs/devvm.md, "t3 stays up"): t3
// migrates state.sqlite forward only, so the builder never moves t3 below
// the newest version that has run on this box, and while the freeze file
// exists it changes t3's version not at all.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import { writeFileAtomic } from "../machine/files.ts";
import { STATE_DIR } from "../machine/layout.ts";

/** While it exists, no build and no timer changes t3's version; removing it is the admin's sign the problem is understood. */
export const T3_FREEZE = "/etc/t3-autoupdate.freeze";
/** One line: the newest t3 version that was ever active here (the builder's record). */
export const T3_NEWEST_RUN = `${STATE_DIR}/t3-newest-run`;

/**
 * Orders t3 versions as npm does for the ones t3 publishes: numeric parts
 * first, then a release above its prereleases (0.0.27 > 0.0.27-nightly.1),
 * prerelease identifiers numerically where both are numbers.
 */
export function compareVersions(a: string, b: string): number {
  const [coreA = "", preA] = splitPre(a);
  const [coreB = "", preB] = splitPre(b);
  const byCore = compareIds(coreA.split("."), coreB.split("."));
  if (byCore !== 0) return byCore;
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? 1 : -1;
  return compareIds(preA.split("."), preB.split("."));
}

function splitPre(version: string): [string, string | undefined] {
  const plain = version.replace(/^v/, "").split("+")[0]!;
  const dash = plain.indexOf("-");
  return dash < 0 ? [plain, undefined] : [plain.slice(0, dash), plain.slice(dash + 1)];
}

function compareIds(a: string[], b: string[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const [x, y] = [a[i], b[i]];
    if (x === undefined || y === undefined) return x === undefined ? -1 : 1;
    const numeric = /^\d+$/.test(x) && /^\d+$/.test(y);
    const order = numeric ? Number(x) - Number(y) : x < y ? -1 : x > y ? 1 : 0;
    if (order !== 0) return Math.sign(order);
  }
  return 0;
}

/** The newest of the versions given (nulls ignored), or null. */
export function newestOf(versions: Array<string | null | undefined>): string | null {
  return versions
    .filter((v): v is string => typeof v === "string" && v !== "")
    .reduce<string | null>((newest, v) => (newest === null || compareVersions(v, newest) > 0 ? v : newest), null);
}

export function readNewestRun(ctx: Pick<BuildContext, "root">): string | null {
  try {
    return readFileSync(hostPath(ctx, T3_NEWEST_RUN), "utf8").trim() || null;
  } catch {
    return null;
  }
}

/** Called once a version is active: the record only ever moves up. */
export async function recordRun(ctx: Pick<BuildContext, "root">, version: string): Promise<void> {
  const newest = newestOf([readNewestRun(ctx), version]);
  if (newest === readNewestRun(ctx)) return;
  const file = hostPath(ctx, T3_NEWEST_RUN);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, `${newest}\n`, { mode: 0o644, uid: 0, gid: 0 });
}

/** Why a move to `to` would be a downgrade, or null: `newest` has run here and migrated the databases. */
export function downgradeRefusal(to: string, newest: string | null): { message: string; hint: string } | null {
  if (newest === null || compareVersions(to, newest) >= 0) return null;
  return {
    message: `t3 ${to} (pins.json) is older than t3 ${newest}, which has already run on this box and may have migrated every state.sqlite forward; t3 migrates forward only, so t3 stays at the version it runs`,
    hint: `adopt the running one: \`build.ts lock --update t3@${newest}\`; going back below it is a restore of the state-prebump copies, not a pin`,
  };
}

/** The freeze file's first line (its reason, when the admin or a rollback wrote one), or null when no freeze holds. */
export function freezeHolds(ctx: Pick<BuildContext, "root">): string | null {
  const file = hostPath(ctx, T3_FREEZE);
  if (!existsSync(file)) return null;
  try {
    return readFileSync(file, "utf8").split("\n")[0]!.trim().slice(0, 200);
  } catch {
    return "";
  }
}
