import { existsSync, readFileSync } from "node:fs";
import { readAccountTable } from "../lib/machine/accounts.ts";
import { readlink } from "node:fs/promises";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import {
  activeInstall,
  checkGlobalCli,
  cliPrefix,
  globalCliInventory,
  installGlobalCli,
  prepareGlobalCli,
  relinkVersion,
  pinnedNodeEnv,
  UNDER_ROOT_REASON,
  type GlobalCli,
  type GlobalCliPlan,
} from "../lib/tools/npm-global.ts";
import type { Check, Stage } from "../lib/core/stage.ts";
import { withNodeForInstalls } from "./node.ts";
import { activeT3ServeInstances, activeUnits, offlineReason, systemctl } from "../lib/machine/systemd.ts";
import {
  checkedBy,
  DISPATCH_UNIT,
  hasDispatch,
  moveInstances,
  newestPrebumpCopy,
  restoreDatabase,
  signInThroughDispatch,
} from "../lib/tools/t3-canary.ts";
import { replaceSymlink } from "../lib/machine/files.ts";
import { BIN_DIR } from "../lib/machine/layout.ts";
import { action } from "../lib/core/change.ts";
import { checkT3Health } from "../lib/tools/t3-health.ts";
import {
  backUpBeforeVersionChange,
  copyUsersFile,
  describeBackup,
  prebumpBackups,
  usersWithT3State,
} from "../lib/tools/t3-prebump-backup.ts";
import { NPM_T3_DIR } from "./retire-legacy.ts";
import {
  downgradeRefusal,
  freezeHolds,
  newestOf,
  readDeferred,
  readLastGood,
  readNewestRun,
  recordRun,
  removeDeferred,
  resetNewestRun,
  T3_FREEZE,
  writeLastGood,
} from "../lib/tools/t3-gate.ts";

export const T3: GlobalCli = { name: "t3", bins: ["t3"] };

/**
 * A new t3 is trusted only after a health check of its own prefix, before the
 * links switch (docs/devvm.md stage 5: a nightly once broke pairing for every
 * user). Unhealthy: the links never switch, so the version before stays.
 */
async function assertHealthy(
  ctx: BuildContext,
  hostPrefix: string,
  version: string,
  before: string | null,
  database: { user: string; copy: string } | null,
): Promise<void> {
  const health = await checkT3Health(ctx, {
    t3: `${hostPrefix}/bin/t3`,
    expectedVersion: version,
    env: pinnedNodeEnv(ctx),
    ...(database && {
      copyDatabase: (userdata: string) =>
        copyUsersFile(ctx, database.user, database.copy, path.join(userdata, "state.sqlite")),
      // As that user, as production runs t3: a crafted database reaches no more than its owner has.
      runAs: readAccountTable(ctx).users.get(database.user),
    }),
  });
  if (health.healthy) return;
  const on = database ? ` on a copy of ${database.user}'s state.sqlite` : "";
  ctx.log.info(`REFUSED t3 ${version}: its health check${on} failed (${health.check})`);
  throw new UserError(
    `t3 ${version} failed its health check${on} (${health.check}): ${health.saw}; ${before ? `t3 ${before} stays active` : "no t3 is active"}`,
    `the new install ${cliPrefix(T3.name, version)} was removed; pin t3 to a version that passes (--debug shows t3 serve's output)`,
  );
}

/** Whose database the health check runs on: an admin's, else any user's (sorted), among those who have one. */
function healthDatabaseUser(ctx: BuildContext): string | null {
  const withState = usersWithT3State(ctx);
  const admins = withState.filter((user) => ctx.inputs.roster?.[user]?.tier === "admin");
  return admins[0] ?? withState[0] ?? null;
}

/**
 * The t3 that users' databases last saw: the builder's active one, else (on
 * a box the old scripts built, before retire-legacy removes it) the old
 * updater's global npm t3, whose version may be a nightly that migrated them.
 */
async function versionBefore(ctx: BuildContext): Promise<string | null> {
  const active = (await activeInstall(ctx, T3.name, "t3"))?.version;
  if (active) return active;
  try {
    const legacy = JSON.parse(readFileSync(hostPath(ctx, `${NPM_T3_DIR}/package.json`), "utf8")) as {
      version?: unknown;
    };
    return typeof legacy.version === "string" ? legacy.version : null;
  } catch {
    return null;
  }
}

/** What check found for apply: the CLI's plan, and the t3 that users' databases last saw. */
interface T3Plan {
  cli: GlobalCliPlan;
  before: string | null;
  /** An earlier build switched to the active version and stopped before every instance had moved (last-good is older). */
  resume?: { from: string; to: string };
  /** --t3-back-to: each database's copy from the version gone back to, put back before the switch. */
  back?: Array<{ user: string; copy: string }>;
}

/**
 * The way back below the newest t3 that ran, named by the admin: every
 * database is put back as its newest copy made when t3 moved away from the
 * version gone back to; a user whose database has none stops it all.
 */
function planWayBack(ctx: BuildContext, to: string, newest: string): Array<{ user: string; copy: string }> {
  const users = usersWithT3State(ctx);
  const copies = users.map((user) => ({ user, copy: newestPrebumpCopy(ctx, user, { from: to }) }));
  const missing = copies.filter((c) => c.copy === null).map((c) => c.user);
  if (missing.length > 0)
    throw new UserError(
      `no way back to t3 ${to}: the t3 database of ${missing.join(", ")} has no copy from t3 ${to} (state-prebump-${to}-*.sqlite in /var/backups/t3-state/USER), and t3 ${newest} may have migrated it forward; t3 stays as it is`,
      `go back only to a version every database has a copy from, or move those databases aside first`,
    );
  return copies.map(({ user, copy }) => ({ user, copy: copy! }));
}

/** The instances that would move, refused when the dispatcher their sign-in goes through is down. */
async function instancesToMove(ctx: BuildContext, to: string, stays: string | null): Promise<string[]> {
  const instances = offlineReason(ctx) ? [] : await activeT3ServeInstances(ctx);
  if (instances.length > 0 && !hasDispatch(ctx))
    warn(
      ctx,
      `no t3-dispatch is installed: each instance's restart onto t3 ${to} is checked by its own GET / alone, not a sign-in`,
    );
  // The instances move only through a sign-in through the dispatcher: when it is installed and down, no switch.
  if (instances.length > 0 && hasDispatch(ctx) && !(await activeUnits(ctx, [DISPATCH_UNIT])).has(DISPATCH_UNIT)) {
    ctx.log.info(`REFUSED t3 ${to}: ${DISPATCH_UNIT} is not running, so no instance could be checked`);
    throw new UserError(
      `${DISPATCH_UNIT} is not running, and the instances (${instances.join(", ")}) move to t3 ${to} only once a sign-in through it works; t3 stays at ${stays ?? "(none)"}`,
      `start it (\`systemctl start ${DISPATCH_UNIT}\`, \`journalctl -u ${DISPATCH_UNIT}\` says why it stopped), then build again`,
    );
  }
  return instances;
}

const moveAction = (ctx: BuildContext, to: string, instances: string[], why = "") =>
  action(
    `restart the idle instances onto t3 ${to}${why} one at a time, each checked by ${hasDispatch(ctx) ? "a sign-in through t3-dispatch" : "its own GET / (no t3-dispatch is installed)"} (${instances.length} running); a busy one is deferred to t3-migrate-idle`,
  );

/** The version change, and the copies of every t3 database it needs first (so --plan shows them). */
export async function checkT3(ctx: BuildContext): Promise<Check<T3Plan>> {
  const pin = ctx.inputs.pins.npm.t3;
  const { changes, managed, plan } = await checkGlobalCli(ctx, T3, pin);
  // Only a version change needs it (the gate, the health check's message, the backups).
  if (!changes.some((c) => c.kind === "package")) {
    const active = plan.before?.version ?? null;
    const lastGood = readLastGood(ctx);
    // A switch whose instances did not all move (the build was stopped): they move now. Not under a
    // freeze: a rollback that found no install of last-good to go back to leaves the link so.
    if (active && lastGood && lastGood !== active && freezeHolds(ctx) === null) {
      const instances = await instancesToMove(ctx, active, active);
      if (instances.length > 0)
        return {
          changes: [
            ...changes,
            moveAction(
              ctx,
              active,
              instances,
              ` (an earlier build switched to it from ${lastGood} and stopped before all had moved)`,
            ),
          ],
          managed,
          plan: { cli: plan, before: lastGood, resume: { from: lastGood, to: active } },
        };
    }
    return { changes, managed, plan: { cli: plan, before: null } };
  }
  const before = await versionBefore(ctx);
  // Before the freeze: a pin below what ran is a mistake to fix whether or not a freeze holds.
  const newest = newestOf([readNewestRun(ctx), before]);
  const refusal = downgradeRefusal(pin.version, newest);
  if (ctx.t3BackTo !== undefined && ctx.t3BackTo !== pin.version)
    throw new UserError(
      `--t3-back-to ${ctx.t3BackTo}, but pins.json pins t3 ${pin.version}`,
      `pin the version gone back to first: \`build.ts lock --update t3@${ctx.t3BackTo}\``,
    );
  if (ctx.t3BackTo !== undefined && !refusal)
    throw new UserError(
      `--t3-back-to ${pin.version}: t3 ${pin.version} is not below the newest t3 that has run here (${newest ?? "none"}), so there is no way back to take`,
      "build without --t3-back-to: the gate moves t3 forward",
    );
  if (refusal && ctx.t3BackTo === undefined) {
    ctx.log.info(`REFUSED t3 ${before ?? "(none)"} -> ${pin.version}: a downgrade`);
    throw new UserError(refusal.message, refusal.hint);
  }
  const freeze = freezeHolds(ctx);
  if (freeze !== null) {
    const why = freeze ? ` (${freeze})` : "";
    ctx.log.info(`FROZEN t3 stays at ${before ?? "(none)"}, pin ${pin.version} waits: ${T3_FREEZE} exists${why}`);
    return {
      skip: `FROZEN: a freeze holds: ${T3_FREEZE} exists${why}, so t3 stays at ${before ?? "(none)"} and ${pin.version} is not installed; remove the file once the problem is understood`,
    };
  }
  const instances = await instancesToMove(ctx, pin.version, before);
  const backups = prebumpBackups(ctx, before, pin.version).map(describeBackup);
  if (refusal) {
    const back = planWayBack(ctx, pin.version, newest!);
    const restores = back.map(({ user, copy }) => action(`put ${user}'s t3 state back as ${copy}`));
    const restart =
      instances.length > 0
        ? [
            action(
              `stop every instance, then start them on t3 ${pin.version}, each checked by a sign-in through t3-dispatch (${instances.length} running)`,
            ),
          ]
        : [];
    return { changes: [...backups, ...restores, ...changes, ...restart], managed, plan: { cli: plan, before, back } };
  }
  const moves = instances.length > 0 ? [moveAction(ctx, pin.version, instances)] : [];
  return { changes: [...backups, ...changes, ...moves], managed, plan: { cli: plan, before } };
}

/** The way back (--t3-back-to): copies of today's databases, the health check, every instance stopped, the copies from then put back, the switch, every instance started and signed in to. */
async function goBack(
  ctx: BuildContext,
  cli: GlobalCliPlan,
  before: string | null,
  back: Array<{ user: string; copy: string }>,
): Promise<Change[]> {
  const pin = ctx.inputs.pins.npm.t3;
  const backups: Change[] = [];
  const done: Change[] = [];
  const offline = offlineReason(ctx);
  let stopped: string[] = [];
  const source = healthDatabaseUser(ctx);
  const changes = await installGlobalCli(ctx, T3, pin, cli, {
    beforeVerify: async () => void backups.push(...(await backUpBeforeVersionChange(ctx, before, pin.version))),
    // On the database it will run on: the copy from then.
    verify: async (prefix) => {
      const copy = back.find((b) => b.user === source);
      await assertHealthy(ctx, prefix, pin.version, before, copy ?? null);
    },
    beforeSwitch: async () => {
      stopped = offline ? [] : await activeT3ServeInstances(ctx);
      if (stopped.length > 0) await systemctl(ctx, ["stop", ...stopped]);
      try {
        for (const { user, copy } of back) {
          await restoreDatabase(ctx, user, copy);
          ctx.log.info(`ROLLBACK ${user} (--t3-back-to ${pin.version}): state.sqlite is ${copy} again`);
          done.push(action(`put ${user}'s t3 state back as ${copy}`));
        }
      } catch (error) {
        // The version stays: what was stopped runs again, on what it had (a database put back migrates forward again).
        if (stopped.length > 0) await systemctl(ctx, ["start", ...stopped]);
        throw error;
      }
    },
    keepVersions: [readLastGood(ctx)],
  });
  // The databases are as t3 left them then: the newest t3 they have seen is this one again.
  await resetNewestRun(ctx, pin.version);
  await writeLastGood(ctx, pin.version);
  for (const marker of readDeferred(ctx).markers) removeDeferred(ctx, marker.user);
  const failed: string[] = [];
  if (stopped.length > 0) await systemctl(ctx, ["start", ...stopped]);
  for (const unit of stopped.sort()) {
    const user = unit.slice("t3-serve@".length, -".service".length);
    const entry = ctx.inputs.roster[user];
    if (!entry || entry.parked) continue;
    const timeoutMs = (ctx.settings.t3SignInTimeout ?? 30) * 1000;
    const signedIn = hasDispatch(ctx)
      ? await signInThroughDispatch(entry.authentik_user, { timeoutMs })
      : { ok: true as const };
    const line = signedIn.ok
      ? `ROLLBACK ${user}: started on t3 ${pin.version}; ${hasDispatch(ctx) ? checkedBy(ctx) : "no t3-dispatch is installed to sign in through"}`
      : `ROLLBACK ${user}: started on t3 ${pin.version}, but a sign-in through t3-dispatch failed: ${signedIn.saw}`;
    ctx.log.info(line);
    if (signedIn.ok) done.push(action(line));
    else failed.push(`${user}: ${signedIn.saw}`);
  }
  if (failed.length > 0)
    throw new UserError(
      `t3 is back at ${pin.version} with every database put back, but a sign-in through t3-dispatch failed for ${failed.join("; ")}`,
      "see `journalctl -u t3-serve@USER` and t3-dispatch's journal",
    );
  return [...backups, ...changes, ...done];
}

export default {
  name: "t3",
  description:
    "Installs the pinned t3 (T3 Code) for all users: /usr/local/bin/t3, switched only once the new version passes a health check and every t3 database is copied",
  pins: (where) => (where.underRoot ? [] : ["npm.t3.integrity"]),
  check: async (ctx) => (underRoot(ctx) ? { skip: UNDER_ROOT_REASON } : checkT3(ctx)),
  apply: async (ctx, { plan: { cli, before, resume, back } }) => {
    const pin = ctx.inputs.pins.npm.t3;
    if (back) return goBack(ctx, cli, before, back);
    if (resume) {
      const links = await installGlobalCli(ctx, T3, pin, cli);
      return [
        ...links,
        ...(await moveInstances(ctx, { ...resume, relink: (version) => relinkVersion(ctx, T3, version) })),
      ];
    }
    const backups: Change[] = [];
    const source = before === null ? null : healthDatabaseUser(ctx);
    // The link before the switch: a rollback to a version the builder did not install (the old scripts') goes back to it.
    const linkBefore = await readlink(hostPath(ctx, `${BIN_DIR}/t3`)).catch(() => null);
    const changes = await installGlobalCli(ctx, T3, pin, cli, {
      // Every database is copied first, as its user: the health check runs on one of the copies, and a
      // rollback puts them back. Not yet active: nothing can run the new version until the switch.
      beforeVerify: async () => void backups.push(...(await backUpBeforeVersionChange(ctx, before, pin.version))),
      verify: async (prefix) => {
        const copy = source && prebumpBackups(ctx, before, pin.version).find((b) => b.user === source);
        const database = copy && existsSync(hostPath(ctx, copy.path)) ? { user: copy.user, copy: copy.path } : null;
        if (source && !database)
          ctx.log.info(`no copy of ${source}'s state.sqlite was made: the health check runs on an empty one`);
        await assertHealthy(ctx, prefix, pin.version, before, database);
      },
      keepVersions: [readLastGood(ctx)],
    });
    if (!changes.some((c) => c.kind === "package")) return [...backups, ...changes];
    // The downgrade guard's record: this version may migrate the databases from now on.
    await recordRun(ctx, pin.version);
    const offline = offlineReason(ctx);
    if (offline) {
      ctx.log.info(`running t3-serve@ instances: ${offline}`);
      await writeLastGood(ctx, pin.version);
      return [...backups, ...changes];
    }
    const moved = await moveInstances(ctx, {
      from: before,
      to: pin.version,
      relink: async (version) => {
        if (await relinkVersion(ctx, T3, version)) return true;
        // The old scripts' install, still where the link led before.
        if (!linkBefore || version !== before) return false;
        await replaceSymlink(hostPath(ctx, `${BIN_DIR}/t3`), linkBefore);
        return (await activeInstall(ctx, T3.name, "t3"))?.version === version;
      },
    });
    return [...backups, ...changes, ...moved];
  },
  // npm installs it into a staging folder while apt runs; apply moves it into place.
  prepare(ctx) {
    if (!underRoot(ctx)) prepareGlobalCli(ctx, T3, ctx.inputs.pins.npm.t3, (work) => withNodeForInstalls(ctx, work));
  },
  inventory: (ctx) => globalCliInventory(ctx, T3),
} satisfies Stage<T3Plan>;
