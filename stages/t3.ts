import { readFileSync } from "node:fs";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import {
  activeInstall,
  checkGlobalCli,
  cliPrefix,
  globalCliInventory,
  installGlobalCli,
  prepareGlobalCli,
  pinnedNodeEnv,
  UNDER_ROOT_REASON,
  type GlobalCli,
  type GlobalCliPlan,
} from "../lib/tools/npm-global.ts";
import type { Check, Stage } from "../lib/core/stage.ts";
import { withNodeForInstalls } from "./node.ts";
import { activeT3ServeInstances, addPendingRestarts, offlineReason } from "../lib/machine/systemd.ts";
import { checkT3Health } from "../lib/tools/t3-health.ts";
import { backUpBeforeVersionChange, describeBackup, prebumpBackups } from "../lib/tools/t3-prebump-backup.ts";
import { NPM_T3_DIR } from "./retire-legacy.ts";
import { downgradeRefusal, freezeHolds, newestOf, readNewestRun, recordRun, T3_FREEZE } from "../lib/tools/t3-gate.ts";

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
): Promise<void> {
  const health = await checkT3Health(ctx, {
    t3: `${hostPrefix}/bin/t3`,
    expectedVersion: version,
    env: pinnedNodeEnv(ctx),
  });
  if (health.healthy) return;
  throw new UserError(
    `t3 ${version} failed its health check (${health.check}): ${health.saw}; ${before ? `t3 ${before} stays active` : "no t3 is active"}`,
    `the new install ${cliPrefix(T3.name, version)} was removed; pin t3 to a version that passes (--debug shows t3 serve's output)`,
  );
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
}

/** The version change, and the copies of every t3 database it needs first (so --plan shows them). */
export async function checkT3(ctx: BuildContext): Promise<Check<T3Plan>> {
  const pin = ctx.inputs.pins.npm.t3;
  const { changes, managed, plan } = await checkGlobalCli(ctx, T3, pin);
  // Only a version change needs it (the gate, the health check's message, the backups).
  if (!changes.some((c) => c.kind === "package")) return { changes, managed, plan: { cli: plan, before: null } };
  const before = await versionBefore(ctx);
  // Before the freeze: a pin below what ran is a mistake to fix whether or not a freeze holds.
  const refusal = downgradeRefusal(pin.version, newestOf([readNewestRun(ctx), before]));
  if (refusal) {
    ctx.log.info(`REFUSED t3 ${before ?? "(none)"} -> ${pin.version}: a downgrade`);
    throw new UserError(refusal.message, refusal.hint);
  }
  const freeze = freezeHolds(ctx);
  if (freeze !== null) {
    const why = freeze ? ` (${freeze})` : "";
    ctx.log.info(`FROZEN t3 stays at ${before ?? "(none)"}, pin ${pin.version} waits: ${T3_FREEZE} exists${why}`);
    return {
      skip: `a freeze holds: ${T3_FREEZE} exists${why}, so t3 stays at ${before ?? "(none)"} and ${pin.version} is not installed; remove the file once the problem is understood`,
    };
  }
  const backups = prebumpBackups(ctx, before, pin.version).map(describeBackup);
  return { changes: [...backups, ...changes], managed, plan: { cli: plan, before } };
}

/**
 * Running t3-serve@ instances still run the old t3. They are restarted only
 * when idle (docs/devvm.md stage 5), by the instances stage, which reads this
 * record: in a full build it runs later, and after the enforcer's
 * `--stage t3` the hourly reconcile does it.
 */
async function markInstancesForRestart(ctx: BuildContext): Promise<void> {
  const offline = offlineReason(ctx);
  if (offline) return ctx.log.info(`running t3-serve@ instances: ${offline}`);
  const instances = await activeT3ServeInstances(ctx);
  await addPendingRestarts(ctx, instances);
  ctx.log.info(
    instances.length > 0
      ? `restart due, when idle, for ${instances.join(", ")} (the instances stage does it)`
      : "no t3-serve@ instance is running",
  );
}

export default {
  name: "t3",
  description:
    "Installs the pinned t3 (T3 Code) for all users: /usr/local/bin/t3, switched only once the new version passes a health check and every t3 database is copied",
  pins: (where) => (where.underRoot ? [] : ["npm.t3.integrity"]),
  check: async (ctx) => (underRoot(ctx) ? { skip: UNDER_ROOT_REASON } : checkT3(ctx)),
  apply: async (ctx, { plan: { cli, before } }) => {
    const pin = ctx.inputs.pins.npm.t3;
    const backups: Change[] = [];
    const changes = await installGlobalCli(ctx, T3, pin, cli, {
      verify: (prefix) => assertHealthy(ctx, prefix, pin.version, before),
      // Healthy, not yet active: the last moment before anything can run it.
      beforeSwitch: async () => void backups.push(...(await backUpBeforeVersionChange(ctx, before, pin.version))),
    });
    if (changes.some((c) => c.kind === "package")) {
      // The downgrade guard's record: this version may migrate the databases from now on.
      await recordRun(ctx, pin.version);
      await markInstancesForRestart(ctx);
    }
    return [...backups, ...changes];
  },
  // npm installs it into a staging folder while apt runs; apply moves it into place.
  prepare(ctx) {
    if (!underRoot(ctx)) prepareGlobalCli(ctx, T3, ctx.inputs.pins.npm.t3, (work) => withNodeForInstalls(ctx, work));
  },
  inventory: (ctx) => globalCliInventory(ctx, T3),
} satisfies Stage<T3Plan>;
