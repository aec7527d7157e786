// Copies of every t3 database before a new t3 version can open one (docs/devvm.md
// stage 5: a nightly once migrated every user's state.sqlite forward, so a
// rollback of t3 alone left the databases behind). The t3 stage runs this
// after the health check and before the links switch: from the switch on,
// whatever starts t3 runs the new version (the instances stage's idle
// restart, a crashed instance's Restart=on-failure, a user typing `t3`).
//
// The copy is the daily backup's own (files/service/t3-state-backup
// --prebump), so the online copy as the user, its 15-minute cap and its
// folder rules live in one place. It runs from the builder's files/, not
// from /usr/local/bin: service-helpers installs it there after this stage.
import { constants, createWriteStream, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import path from "node:path";
import type { Change } from "../core/change.ts";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import { tail, UserError } from "../core/errors.ts";
import { run } from "../machine/exec.ts";
import { readAccountTable } from "../machine/accounts.ts";

export const T3_BACKUP_DIR = "/var/backups/t3-state";
const STATE = ".t3/userdata/state.sqlite";
const PROGRAM = "service/t3-state-backup";
// The program stops a copy after 15 minutes (and kills it 30 s later); this
// only guards against the program itself hanging.
const PER_USER_TIMEOUT_MS = 17 * 60_000;

export interface PrebumpBackup {
  user: string;
  /** Machine path of the copy. */
  path: string;
}

/**
 * Every account whose home holds a t3 database, not only the mapped ones:
 * a parked user, a user cut from the roster (and maybe back later) or one
 * running `t3` by hand (its default base dir is ~/.t3) would also open it
 * with the new version.
 */
export function usersWithT3State(ctx: Pick<BuildContext, "root">): string[] {
  const users = [...readAccountTable(ctx).users].filter(
    ([, { home }]) => home.startsWith("/") && isFile(hostPath(ctx, path.posix.join(home, STATE))),
  );
  return users.map(([user]) => user).sort();
}

/** The copies a move from `from` to `to` needs: none on a first install or when the version stays. */
export function prebumpBackups(ctx: Pick<BuildContext, "root">, from: string | null, to: string): PrebumpBackup[] {
  if (from === null || from === to) return [];
  return usersWithT3State(ctx).map((user) => ({
    user,
    path: `${T3_BACKUP_DIR}/${user}/state-prebump-${from}-${to}.sqlite`,
  }));
}

export function describeBackup(backup: PrebumpBackup): Change {
  return { kind: "action", description: `copy ${backup.user}'s t3 state to ${backup.path}` };
}

/**
 * Makes the copies, one user at a time; every user is tried, and any
 * failure throws naming each user that failed, so the caller keeps the
 * version before (a rollback without the database is the incident).
 */
export async function backUpBeforeVersionChange(
  ctx: BuildContext,
  from: string | null,
  to: string,
  which: (user: string) => boolean = () => true,
): Promise<Change[]> {
  if (from === null) return [];
  const backups = prebumpBackups(ctx, from, to).filter(({ user }) => which(user));
  const program = path.join(ctx.repoDir, "files", PROGRAM);
  const failures: Array<{ user: string; why: string }> = [];
  for (const { user } of backups) {
    // sh: the builder's copy of files/ need not be executable.
    const result = await run(ctx, "sh", [program, "--prebump", from, to, user], {
      okCodes: [1],
      timeoutMs: PER_USER_TIMEOUT_MS,
    });
    if (result.exitCode !== 0) failures.push({ user, why: tail(result.stderr, 3).replace(/\n/g, "; ") });
  }
  if (failures.length > 0) {
    throw new UserError(
      `the t3 state of ${failures.map((f) => f.user).join(", ")} could not be copied before t3 ${to}, so t3 ${from} stays active:\n${failures.map((f) => `${f.user}: ${f.why}`).join("\n")}`,
      `make each database readable by its user (try \`runuser -u USER -- sqlite3 ~USER/${STATE} 'pragma quick_check'\`) or move it aside, then build again`,
    );
  }
  return backups.map(describeBackup);
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Copies a user's copy (a file in their own backup folder) to `dest`, read
 * only when it is a plain file the user owns, never through a link: the
 * folder is the user's, and root must not read for them what they cannot.
 */
export async function copyUsersFile(ctx: Pick<BuildContext, "root">, user: string, file: string, dest: string) {
  const uid = readAccountTable(ctx).users.get(user)?.uid;
  const handle = await open(hostPath(ctx, file), constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.uid !== uid) throw new Error(`${file} is not a plain file of ${user}'s`);
    await pipeline(
      handle.createReadStream({ autoClose: false }),
      createWriteStream(dest, { mode: 0o600, flags: "wx" }),
    );
  } finally {
    await handle.close();
  }
}
