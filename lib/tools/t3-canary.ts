// After t3's links switch to a new version, the running instances move to it
// one at a time, idle ones only, each checked by a sign-in through the real
// t3-dispatch; the first failure puts t3 back to last-good with that user's
// database, and sets the freeze (docs/devvm.md, "t3 stays up": one broken
// version reached every user at once). A busy instance is deferred to
// t3-migrate-idle, which moves it with the same copy, restart and sign-in.
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fetch } from "undici";
import { action, type Change } from "../core/change.ts";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { readAccountTable } from "../machine/accounts.ts";
import { agentsUnder } from "../machine/agents.ts";
import { run, setprivAs } from "../machine/exec.ts";
import { DISPATCH_PORT } from "../machine/layout.ts";
import { envValue } from "../machine/env-file.ts";
import { activeT3ServeInstances, activeUnits, systemctl, t3ServeInstance, UNIT_DIR } from "../machine/systemd.ts";
import {
  removeDeferred,
  readDeferred,
  readLastGood,
  setFreeze,
  T3_FREEZE,
  writeDeferred,
  writeLastGood,
} from "./t3-gate.ts";
import { T3_BACKUP_DIR } from "./t3-prebump-backup.ts";

export const DISPATCH_UNIT = "t3-dispatch.service";
const STATE = ".t3/userdata/state.sqlite";

export type SignIn = { ok: true } | { ok: false; saw: string };

/**
 * A browser's first visit through t3-dispatch as the sign-on would make it:
 * GET / with the user's authentik name and `Sec-Fetch-Dest: document`, until
 * a cookie whose name starts with t3_session is set (t3 names it
 * t3_session_<port>_<hash> on some bindings) or the limit passes.
 */
export async function signInThroughDispatch(
  authentikUser: string,
  { timeoutMs = 30_000, origin = `http://127.0.0.1:${DISPATCH_PORT}` } = {},
): Promise<SignIn> {
  const deadline = Date.now() + timeoutMs;
  let saw: string;
  for (;;) {
    try {
      const response = await fetch(`${origin}/`, {
        headers: { "X-authentik-username": authentikUser, "Sec-Fetch-Dest": "document" },
        redirect: "manual",
        signal: AbortSignal.timeout(Math.max(1000, Math.min(10_000, deadline - Date.now()))),
      });
      const body = (await response.text()).trim().split("\n")[0]!.slice(0, 200);
      const cookies = response.headers.getSetCookie();
      if (cookies.some((c) => /^t3_session[^=;]*=/.test(c))) return { ok: true };
      saw = `HTTP ${response.status}${cookies.length ? ` with cookies ${cookies.map((c) => c.split("=")[0]).join(", ")}` : ", no cookie"}${body ? `: ${body}` : ""}`;
    } catch (error) {
      saw = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
    }
    if (Date.now() >= deadline) return { ok: false, saw: `${saw} (for ${Math.round(timeoutMs / 1000)} s)` };
    await sleep(1000);
  }
}

/** Is t3-dispatch installed here (its unit, which stage units installs only with its program)? */
export const hasDispatch = (ctx: Pick<BuildContext, "root">) =>
  existsSync(hostPath(ctx, `${UNIT_DIR}/${DISPATCH_UNIT}`));

/**
 * Without t3-dispatch (a box built without its source: the builder warns),
 * nobody signs in through it: the check falls back to the instance's own
 * GET / answering 200 on its port.
 */
async function answersDirectly(ctx: BuildContext, user: string, timeoutMs: number): Promise<SignIn> {
  let port: string | undefined;
  try {
    port = envValue(readFileSync(hostPath(ctx, `/etc/t3-serve/${user}.env`), "utf8"), "T3_PORT");
  } catch {
    // named below
  }
  if (!port || !/^\d+$/.test(port)) return { ok: false, saw: `no T3_PORT in /etc/t3-serve/${user}.env` };
  const deadline = Date.now() + timeoutMs;
  let saw: string;
  for (;;) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
      await response.body?.cancel();
      if (response.status === 200) return { ok: true };
      saw = `GET / on port ${port} answered ${response.status}`;
    } catch (error) {
      saw = `GET / on port ${port}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`;
    }
    if (Date.now() >= deadline) return { ok: false, saw: `${saw} (for ${Math.round(timeoutMs / 1000)} s)` };
    await sleep(500);
  }
}

/** How a restart is checked: a sign-in through t3-dispatch, or (none installed) the instance's own answer. */
export const checkedBy = (ctx: Pick<BuildContext, "root">) =>
  hasDispatch(ctx)
    ? "a sign-in through t3-dispatch set a t3_session cookie"
    : "it answered GET / (no t3-dispatch is installed)";

/** Restarts the user's instance and signs in through t3-dispatch (without one: asks the instance itself). */
export async function restartAndSignIn(ctx: BuildContext, user: string, authentikUser: string): Promise<SignIn> {
  const unit = t3ServeInstance(user);
  const restarted = await systemctl(ctx, ["restart", unit], [1, 3, 4, 5]);
  if (restarted.exitCode !== 0)
    return { ok: false, saw: `systemctl restart ${unit} failed: ${restarted.stderr.trim().split("\n")[0]}` };
  const timeoutMs = (ctx.settings.t3SignInTimeout ?? 30) * 1000;
  return hasDispatch(ctx) ? signInThroughDispatch(authentikUser, { timeoutMs }) : answersDirectly(ctx, user, timeoutMs);
}

/**
 * Why the user's instance is not idle, or null when it is: an agent child,
 * and (strict) where its database has the live t3's table, a turn in
 * progress or an update in the last 15 minutes. Read as the user, read-only;
 * any doubt is a reason.
 */
export async function busyReason(
  ctx: BuildContext,
  user: string,
  { strict }: { strict: boolean },
): Promise<string | null> {
  const agents = await agentsUnder(ctx, t3ServeInstance(user));
  if (agents.length > 0) return `busy: ${agents.join(", ")}`;
  if (!strict) return null;
  const account = readAccountTable(ctx).users.get(user);
  if (!account) return `no account named ${user}`;
  const db = `${account.home}/${STATE}`;
  const query = await readAsUser(ctx, account, [
    "sh",
    "-c",
    // No database: nothing in progress. -readonly: never created, never migrated.
    `[ -e "$1" ] || { echo none; exit 0; }; db=$1; shift; exec sqlite3 "$@" "$db" "select count(*) from sqlite_master where type = 'table' and name = 'projection_thread_sessions';"`,
    "sh",
    db,
    ...SQLITE_READ,
  ]);
  const has = query.stdout.trim();
  if (query.exitCode !== 0) return `its database could not be read: ${query.stderr.trim().split("\n")[0]}`;
  if (has === "none" || has === "0") return null;
  const turns = await readAsUser(ctx, account, [
    "sqlite3",
    ...SQLITE_READ,
    db,
    "select (select count(*) from projection_thread_sessions where active_turn_id is not null), (select max(updated_at) from projection_thread_sessions);",
  ]);
  if (turns.exitCode !== 0) return `its database could not be read: ${turns.stderr.trim().split("\n")[0]}`;
  return turnsBusy(turns.stdout.trim(), Date.now());
}

// Read-only (never created, never migrated), waiting a moment for t3's write lock.
const SQLITE_READ = ["-readonly", "-bail", "-separator", "|", "-cmd", ".timeout 5000"];

/** A read as the account (its exit code, never thrown: a failure is a doubt the caller names). */
const readAsUser = (ctx: BuildContext, account: { uid: number; gid: number }, argv: string[]) =>
  run(ctx, "setpriv", [...asUser(account), ...argv], { okCodes: [1, 2], cwd: "/", timeoutMs: 30_000 }).catch(
    (error: Error) => ({ exitCode: -1, stdout: "", stderr: error.message }),
  );

const asUser = (account: { uid: number; gid: number }) => setprivAs(account, { PATH: "/usr/bin:/bin" });

/** From `ACTIVE|MAX(updated_at)`: why the database says someone works now, or null. Exported for its tests. */
export function turnsBusy(row: string, nowMs: number): string | null {
  const [active = "", updated = ""] = row.split("|");
  if (!/^\d+$/.test(active)) return `its database answered "${row}"`;
  if (Number(active) > 0) return `busy: ${active} turn(s) in progress`;
  if (updated === "") return null;
  const updatedMs = /^\d+(\.\d+)?$/.test(updated)
    ? Number(updated) * (Number(updated) > 1e11 ? 1 : 1000)
    : Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(updated) ? updated : `${updated.replace(" ", "T")}Z`);
  if (Number.isNaN(updatedMs)) return `its last update (${updated}) is no time`;
  const ago = nowMs - updatedMs;
  if (ago < 15 * 60_000) return `busy: its last update was ${Math.max(0, Math.round(ago / 60_000))} min ago`;
  return null;
}

/**
 * The newest copy of the user's database made before a move to `to`
 * (`state-prebump-*-TO.sqlite`) or away from `from` (`state-prebump-FROM-*`), or null.
 */
export function newestPrebumpCopy(
  ctx: Pick<BuildContext, "root">,
  user: string,
  which: { to: string } | { from: string },
): string | null {
  const dir = `${T3_BACKUP_DIR}/${user}`;
  const fits = (name: string) =>
    "to" in which
      ? name.startsWith("state-prebump-") && name.endsWith(`-${which.to}.sqlite`)
      : name.startsWith(`state-prebump-${which.from}-`) && name.endsWith(".sqlite");
  let newest: { file: string; mtime: number } | null = null;
  let names: string[];
  try {
    names = readdirSync(hostPath(ctx, dir));
  } catch {
    return null;
  }
  for (const name of names) {
    if (!fits(name)) continue;
    const stat = lstatSync(hostPath(ctx, `${dir}/${name}`), { throwIfNoEntry: false });
    if (stat?.isFile() && (newest === null || stat.mtimeMs > newest.mtime))
      newest = { file: `${dir}/${name}`, mtime: stat.mtimeMs };
  }
  return newest?.file ?? null;
}

/**
 * Puts `copy` back as the user's state.sqlite (0600, -wal and -shm
 * removed), as the user: a home is the user's, so root never writes there
 * through a path the user could have turned into a link.
 */
export async function restoreDatabase(ctx: BuildContext, user: string, copy: string): Promise<void> {
  const account = readAccountTable(ctx).users.get(user);
  if (!account) throw new Error(`no account named ${user}`);
  const db = `${account.home}/${STATE}`;
  await run(
    ctx,
    "setpriv",
    [
      ...asUser(account),
      "sh",
      "-c",
      'set -e; cp -- "$1" "$2.devvm-restore"; chmod 0600 "$2.devvm-restore"; mv -fT -- "$2.devvm-restore" "$2"; rm -f -- "$2-wal" "$2-shm"',
      "sh",
      copy,
      db,
    ],
    { cwd: "/", timeoutMs: 15 * 60_000 },
  );
}

export interface CanaryOptions {
  from: string | null;
  to: string;
  /** Points t3's links back at `version`; false when no install of it is left. */
  relink: (version: string) => Promise<boolean>;
}

/**
 * Moves every running instance to `to`, one at a time: an idle one is
 * restarted and signed in to through t3-dispatch, a busy one is deferred.
 * last-good becomes `to` only when every restart passed; the first failure
 * rolls back and throws.
 */
export async function moveInstances(ctx: BuildContext, { from, to, relink }: CanaryOptions): Promise<Change[]> {
  const changes: Change[] = [];
  const moved: string[] = [];
  const units = (await activeT3ServeInstances(ctx)).sort();
  for (const unit of units) {
    const user = unit.slice("t3-serve@".length, -".service".length);
    const entry = ctx.inputs.roster[user];
    if (!entry || entry.parked) {
      ctx.log.info(
        `CANARY ${user}: not an active user of the roster, left as it runs (stage offboarding or instances stops it)`,
      );
      continue;
    }
    const busy = await busyReason(ctx, user, { strict: false });
    if (busy) {
      await writeDeferred(ctx, user, to, from);
      const line = `DEFERRED ${user}: ${busy}; t3-migrate-idle moves it to t3 ${to} once idle`;
      ctx.log.info(line);
      changes.push(action(line));
      continue;
    }
    ctx.log.info(`CANARY ${user}: restarting ${unit} onto t3 ${to}`);
    const signedIn = await restartAndSignIn(ctx, user, entry.authentik_user);
    if (!signedIn.ok) await rollBack(ctx, { from, to, relink, user, saw: signedIn.saw, moved });
    moved.push(user);
    removeDeferred(ctx, user);
    const line = `CANARY ${user}: restarted onto t3 ${to}; ${checkedBy(ctx)}`;
    ctx.log.info(line);
    changes.push(action(line));
  }
  await writeLastGood(ctx, to);
  return changes;
}

async function rollBack(
  ctx: BuildContext,
  { from, to, relink, user, saw, moved }: CanaryOptions & { user: string; saw: string; moved: string[] },
): Promise<never> {
  // The freeze first: whatever happens below, no build or timer tries this version again.
  await setFreeze(ctx, `t3 ${to} failed its canary on ${new Date().toISOString()}: ${user}'s check saw ${saw}`);
  ctx.log.info(`FROZEN t3 changes no version until the admin removes ${T3_FREEZE}`);
  const lastGood = readLastGood(ctx) ?? from;
  const unit = t3ServeInstance(user);
  const done: string[] = [];
  if (lastGood && lastGood !== to && (await relink(lastGood))) done.push(`t3 is back at ${lastGood} (last-good)`);
  else done.push(`t3 stays at ${to}: no install of the last good version${lastGood ? ` (${lastGood})` : ""} is left`);
  ctx.log.info(`ROLLBACK ${user}: the check after the restart onto t3 ${to} failed: ${saw}; ${done[0]}`);
  await systemctl(ctx, ["stop", unit], [1, 3, 4, 5]);
  try {
    const copy = newestPrebumpCopy(ctx, user, { to });
    if (copy) {
      await restoreDatabase(ctx, user, copy);
      done.push(`${user}'s state.sqlite is ${copy} again`);
    } else done.push(`${user} had no copy of a database to put back`);
  } catch (error) {
    done.push(`${user}'s database could not be put back (${(error as Error).message.split("\n")[0]})`);
  } finally {
    await systemctl(ctx, ["start", unit], [1, 3, 4, 5]);
  }
  ctx.log.info(`ROLLBACK ${user}: ${done.slice(1).join("; ")}; ${unit} started again`);
  // The busy ones wait for a version that failed: they stay where they are.
  for (const marker of readDeferred(ctx).markers) if (marker.to === to) removeDeferred(ctx, marker.user);
  // Restarted onto it before this one failed: they run it still, and their next restart starts the version
  // gone back to on a database the failed one may have migrated.
  if (moved.length > 0)
    done.push(
      `${moved.join(", ")} already run${moved.length === 1 ? "s" : ""} t3 ${to} (restarted before ${user}); each one's copy from before is its newest state-prebump-*-${to}.sqlite`,
    );
  const stillUp = await activeUnits(ctx, [unit]);
  throw new UserError(
    `t3 ${to} failed its canary: after ${unit} restarted onto it, ${hasDispatch(ctx) ? "a sign-in through t3-dispatch" : "its own GET /"} saw ${saw}. ${done.join("; ")}; ${unit} ${stillUp.has(unit) ? "runs again" : "did not start again"}; the freeze file ${T3_FREEZE} is set`,
    `see \`journalctl -u ${unit}\` and t3-dispatch's journal; pin a version that works, then remove ${T3_FREEZE}`,
  );
}
