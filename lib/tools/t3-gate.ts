// The gate a t3 version change passes (docs/devvm.md, "t3 stays up"): t3
// migrates state.sqlite forward only, so the builder never moves t3 below
// the newest version that has run on this box, and while the freeze file
// exists it changes t3's version not at all.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
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
  if (newest !== readNewestRun(ctx)) await writeNewestRun(ctx, newest!);
}

async function writeNewestRun(ctx: Pick<BuildContext, "root">, version: string): Promise<void> {
  const file = hostPath(ctx, T3_NEWEST_RUN);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, `${version}\n`, { mode: 0o644, uid: 0, gid: 0 });
}

/** After the way back (every database put back as it was under `version`): the record says `version` again. */
export const resetNewestRun = (ctx: Pick<BuildContext, "root">, version: string) => writeNewestRun(ctx, version);

/** Why a move to `to` would be a downgrade, or null: `newest` has run here and migrated the databases. */
export function downgradeRefusal(to: string, newest: string | null): { message: string; hint: string } | null {
  if (newest === null || compareVersions(to, newest) >= 0) return null;
  return {
    message: `t3 ${to} (pins.json) is older than t3 ${newest}, which has already run on this box and may have migrated every state.sqlite forward; t3 migrates forward only, so t3 stays at the version it runs`,
    hint: `adopt the running one: \`build.ts lock --update t3@${newest}\`; or go back on purpose, every database put back as its copy from t3 ${to}: \`build.ts --stage t3 --t3-back-to ${to}\``,
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

/** The t3 updater's own state (docs/devvm.md, "t3 stays up"), as the live box keeps it. */
export const T3_AUTOUPDATE_DIR = "/var/lib/t3-autoupdate";
/** One line, the version: written only once every instance restarted onto it passed its sign-in. */
export const T3_LAST_GOOD = `${T3_AUTOUPDATE_DIR}/last-good`;
/** One file per user whose instance was busy at a switch: its first line the target version, its second `from=` the version before. */
export const T3_DEFERRED_DIR = `${T3_AUTOUPDATE_DIR}/deferred`;

const oneLine = (ctx: Pick<BuildContext, "root">, file: string): string | null => {
  try {
    return readFileSync(hostPath(ctx, file), "utf8").split("\n")[0]!.trim() || null;
  } catch {
    return null;
  }
};

export const readLastGood = (ctx: Pick<BuildContext, "root">): string | null => oneLine(ctx, T3_LAST_GOOD);

export async function writeLastGood(ctx: Pick<BuildContext, "root">, version: string): Promise<void> {
  if (readLastGood(ctx) === version) return;
  mkdirSync(hostPath(ctx, T3_AUTOUPDATE_DIR), { recursive: true, mode: 0o755 });
  await writeFileAtomic(hostPath(ctx, T3_LAST_GOOD), `${version}\n`, { mode: 0o644, uid: 0, gid: 0 });
}

/** Sets the freeze, its first line saying why: no build changes t3's version until the admin removes it. */
export async function setFreeze(ctx: Pick<BuildContext, "root">, why: string): Promise<void> {
  await writeFileAtomic(
    hostPath(ctx, T3_FREEZE),
    `${why.replace(/\s+/g, " ").slice(0, 400)}\n# Set by the devvm builder. While this file exists no build changes t3's version; remove it once the problem is understood.\n`,
    { mode: 0o644, uid: 0, gid: 0 },
  );
}

export interface DeferredMarker {
  user: string;
  /** The version the instance is to move to. */
  to: string;
  /** The version it ran when it was deferred, when the marker says. */
  from: string | null;
  /** When the marker was written (ms since the epoch). */
  writtenMs: number;
}

const USER_NAME = /^[a-z_][a-z0-9_-]*$/;
const VERSION = /^[0-9A-Za-z.+_-]+$/;

export async function writeDeferred(
  ctx: Pick<BuildContext, "root">,
  user: string,
  to: string,
  from: string | null,
): Promise<void> {
  mkdirSync(hostPath(ctx, T3_DEFERRED_DIR), { recursive: true, mode: 0o755 });
  await writeFileAtomic(hostPath(ctx, `${T3_DEFERRED_DIR}/${user}`), `${to}\n${from ? `from=${from}\n` : ""}`, {
    mode: 0o644,
    uid: 0,
    gid: 0,
  });
}

/** The markers, by user; a file whose name is no user name or whose first line is no version is named in `unreadable`. */
export function readDeferred(ctx: Pick<BuildContext, "root">): { markers: DeferredMarker[]; unreadable: string[] } {
  const dir = hostPath(ctx, T3_DEFERRED_DIR);
  const markers: DeferredMarker[] = [];
  const unreadable: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return { markers, unreadable };
  }
  for (const user of names) {
    const file = path.join(dir, user);
    try {
      const stat = lstatSync(file);
      const [to = "", second = ""] = readFileSync(file, "utf8").split("\n");
      const from = /^from=(.+)$/.exec(second.trim())?.[1] ?? null;
      if (!stat.isFile() || !USER_NAME.test(user) || !VERSION.test(to.trim()) || (from && !VERSION.test(from)))
        throw new Error("not a marker");
      markers.push({ user, to: to.trim(), from, writtenMs: stat.mtimeMs });
    } catch {
      unreadable.push(`${T3_DEFERRED_DIR}/${user}`);
    }
  }
  return { markers, unreadable };
}

export function removeDeferred(ctx: Pick<BuildContext, "root">, user: string): void {
  rmSync(hostPath(ctx, `${T3_DEFERRED_DIR}/${user}`), { force: true });
}
