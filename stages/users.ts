import { createHash } from "node:crypto";
import { existsSync, promises as fs, readFileSync } from "node:fs";
import path from "node:path";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, warn } from "../lib/core/context.ts";
import { applyResources, checkResources, managedBy } from "../lib/machine/files.ts";
import { readAccountTable } from "../lib/machine/accounts.ts";
import * as plan from "../lib/users/roster-accounts.ts";
import type { Stage } from "../lib/core/stage.ts";
import { addPendingRestarts } from "../lib/machine/systemd.ts";
import { BUILDER_DIR } from "../lib/machine/layout.ts";
import { checkTiers } from "../lib/users/tier-check.ts";

type UsersPlan = Awaited<ReturnType<typeof planUsers>>;

async function planUsers(ctx: BuildContext) {
  const roster = ctx.inputs.roster;
  const table = readAccountTable(ctx);
  const steps = plan.planAccounts(roster, table);
  const env = plan.readEnvFiles(ctx);
  const ports = plan.allocatePorts(env.ports, Object.keys(roster));
  const files = plan.userFiles(roster, env, ports);
  const fileChanges = await checkResources(ctx, files);
  // An instance reads its env file at start: a changed one is restarted (when idle) by the instances stage.
  const changed = new Set(fileChanges.filter((c) => c.kind === "content").map((c) => c.path));
  const envChanged = Object.keys(roster).filter((u) => env.texts.has(u) && changed.has(plan.envFile(u)));
  const legacyPorts = existsSync(hostPath(ctx, plan.LEGACY_PORTS_FILE));
  // Each file's check names its missing parents (/etc/t3-serve) again: listed once.
  const changes = unique([
    ...steps.map(plan.describeStep),
    ...fileChanges,
    ...(legacyPorts
      ? [action(`remove ${plan.LEGACY_PORTS_FILE}: the .env files in ${plan.ENV_DIR} are the port record`)]
      : []),
  ]);
  return { steps, files, envChanged, legacyPorts, changes };
}

const unique = (changes: Change[]) => [...new Map(changes.map((c) => [JSON.stringify(c), c])).values()];

/**
 * The hourly reconcile runs the installed builder with its own copy of the
 * roster: a run with another roster (--stage users after an edit) is undone
 * within the hour unless the copy is refreshed too. Said, not guessed at.
 */
function warnIfReconcileDiffers(ctx: BuildContext): void {
  const installed = path.join(BUILDER_DIR, "roster.yaml");
  if (path.resolve(ctx.inputsDir) === hostPath(ctx, BUILDER_DIR) || !existsSync(hostPath(ctx, installed))) return;
  const sha256 = createHash("sha256")
    .update(readFileSync(hostPath(ctx, installed)))
    .digest("hex");
  if (sha256 === ctx.inputs.hashes["roster.yaml"]) return;
  warn(
    ctx,
    `the hourly reconcile reads ${installed}, which differs from this build's roster.yaml and will undo it; add builder-install to --stage (a full build does it)`,
  );
}

export default {
  name: "users",
  firstBoot: "accounts, ports and the sign-in map are the machine's, made from the roster there",
  description:
    "Reconciles roster.yaml (additive only, tiers checked against the cluster): accounts and groups, sticky t3 ports in the .env files, /etc/ttyd-user-map, /etc/ttyd-admins, dispatch.json",
  async check(ctx) {
    // Before anything is planned: a tier the cluster disagrees with stops the stage with nothing changed.
    await checkTiers(ctx, ctx.inputs.roster);
    warnIfReconcileDiffers(ctx);
    const planned = await planUsers(ctx);
    return { changes: planned.changes, managed: managedBy(planned.files), plan: planned };
  },
  async apply(ctx, { plan: { steps, files, envChanged, legacyPorts, changes } }) {
    for (const step of steps) await plan.applyAccountStep(ctx, step);
    if (steps.length > 0) ctx.accounts.reload();
    // Recorded before the env files change: a build that stops after this still restarts them.
    await addPendingRestarts(
      ctx,
      envChanged.map((u) => `t3-serve@${u}.service`),
    );
    await applyResources(ctx, files);
    if (legacyPorts) await fs.rm(hostPath(ctx, plan.LEGACY_PORTS_FILE), { force: true });
    return changes;
  },
} satisfies Stage<UsersPlan>;
