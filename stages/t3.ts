import type { BuildContext } from "../lib/context.ts";
import { underRoot } from "../lib/context.ts";
import { UserError } from "../lib/errors.ts";
import { checkGlobalCli, cliPrefix, globalCliInventory, installGlobalCli, installedVersion, pinnedNodeEnv, UNDER_ROOT_REASON, type GlobalCli } from "../lib/npm-global.ts";
import type { Stage } from "../lib/stage.ts";
import { activeT3ServeInstances, addPendingRestarts, offlineReason } from "../lib/systemd.ts";
import { checkT3Health } from "../lib/t3-health.ts";

export const T3: GlobalCli = { name: "t3", bins: ["t3"] };

/**
 * A new t3 is trusted only after a health check of its own prefix, before the
 * links switch (DEVVM.md stage 5: a nightly once broke pairing for every
 * user). Unhealthy: the links never switch, so the version before stays.
 */
async function assertHealthy(ctx: BuildContext, hostPrefix: string, version: string, before: string | null): Promise<void> {
  const health = await checkT3Health(ctx, { t3: `${hostPrefix}/bin/t3`, expectedVersion: version, env: pinnedNodeEnv(ctx) });
  if (health.healthy) return;
  throw new UserError(
    `t3 ${version} failed its health check (${health.check}): ${health.saw}; ${before ? `t3 ${before} stays active` : "no t3 is active"}`,
    `the new install ${cliPrefix(T3.name, version)} was removed; pin t3 to a version that passes (--debug shows t3 serve's output)`,
  );
}

/**
 * Running t3-serve@ instances still run the old t3. They are restarted only
 * when idle (DEVVM.md stage 5), by the instances stage, which reads this
 * record: in a full build it runs later, and after the enforcer's
 * `--stage t3` the hourly reconcile does it.
 */
async function markInstancesForRestart(ctx: BuildContext): Promise<void> {
  const offline = offlineReason(ctx);
  if (offline) return ctx.log.info(`running t3-serve@ instances: ${offline}`);
  const instances = await activeT3ServeInstances(ctx);
  await addPendingRestarts(ctx, instances);
  ctx.log.info(instances.length > 0 ? `restart due, when idle, for ${instances.join(", ")} (the instances stage does it)` : "no t3-serve@ instance is running");
}

export default {
  name: "t3",
  description: "Installs the pinned t3 (T3 Code) for all users: /usr/local/bin/t3, health-checked before it replaces the version before",
  check: async (ctx) => (underRoot(ctx) ? { skip: UNDER_ROOT_REASON } : checkGlobalCli(ctx, T3, ctx.inputs.pins.npm.t3)),
  apply: async (ctx) => {
    const pin = ctx.inputs.pins.npm.t3;
    const before = await installedVersion(ctx, T3.name, "t3");
    const changes = await installGlobalCli(ctx, T3, pin, { verify: (prefix) => assertHealthy(ctx, prefix, pin.version, before) });
    if (changes.some((c) => c.kind === "package")) await markInstancesForRestart(ctx);
    return changes;
  },
  inventory: (ctx) => globalCliInventory(ctx, T3),
} satisfies Stage;
