import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import type { Change } from "../lib/change.ts";
import type { BuildContext } from "../lib/context.ts";
import { hostPath } from "../lib/context.ts";
import { applyResources, checkResource, checkResources, managedBy } from "../lib/files.ts";
import type { Roster } from "../lib/inputs/roster.ts";
import * as plan from "../lib/roster-accounts.ts";
import type { Stage } from "../lib/stage.ts";
import { addPendingRestarts } from "../lib/systemd.ts";
import { checkTiers } from "../lib/tier-check.ts";

const action = (description: string): Change => ({ kind: "action", description });

/** Clones come from the org's git server, which the builder cannot reach: each missing one is named, every run. */
function logSkippedClones(ctx: BuildContext, roster: Roster, table: plan.AccountTable, migrating: string[]): void {
  for (const [name, user] of Object.entries(roster)) {
    const code = path.join(plan.homeOf(table, name), "code");
    const wanted = user.code_layout === "workspace" ? ["infra", ...(user.repos ?? [])].map((r) => path.join(code, r)) : [code];
    // A migration makes ~/code/infra itself.
    const missing = wanted.filter((c) => !existsSync(hostPath(ctx, c)) && !(migrating.includes(name) && c === path.join(code, "infra")));
    for (const clone of missing) {
      ctx.log.info(`not cloning ${clone} for ${name}: the builder has no org git server to clone from`);
    }
  }
}

async function planUsers(ctx: BuildContext) {
  const roster = ctx.inputs.roster;
  const table = plan.readAccountTable(ctx);
  const steps = plan.planAccounts(roster, table);
  const env = plan.readEnvFiles(ctx);
  const ports = plan.allocatePorts(env.ports, Object.keys(roster));
  const files = plan.userFiles(roster, env, ports);
  // An instance reads its env file at start: a changed one is restarted (when idle) by the instances stage.
  const envChanged: string[] = [];
  for (const user of Object.keys(roster).filter((u) => env.texts.has(u))) {
    const file = files.find((r) => r.path === plan.envFile(user))!;
    if ((await checkResource(ctx, file)).some((c) => c.kind === "content")) envChanged.push(user);
  }
  const migrations = plan.layoutMigrations(ctx, roster, table);
  const legacyPorts = existsSync(hostPath(ctx, plan.LEGACY_PORTS_FILE));
  // Each file's check names its missing parents (/etc/t3-serve) again: listed once.
  const changes = unique([
    ...steps.map(plan.describeStep),
    ...migrations.map((m) => action(`move ${m.code} to ${m.code}/infra (code_layout workspace)`)),
    ...(await checkResources(ctx, files)),
    ...(legacyPorts ? [action(`remove ${plan.LEGACY_PORTS_FILE}: the .env files in ${plan.ENV_DIR} are the port record`)] : []),
  ]);
  return { roster, table, steps, files, envChanged, migrations, legacyPorts, changes };
}

const unique = (changes: Change[]) => [...new Map(changes.map((c) => [JSON.stringify(c), c])).values()];

/** ~/code becomes ~/code/infra by renames only: the clone is never copied or rewritten. */
async function migrateLayout(ctx: BuildContext, code: string): Promise<void> {
  const real = hostPath(ctx, code);
  const stats = await fs.stat(real);
  const aside = `${real}.devvm-migrating`;
  await fs.rename(real, aside);
  // The new ~/code keeps the old one's owner, group and mode.
  await fs.mkdir(real, { mode: 0o700 });
  await fs.chown(real, stats.uid, stats.gid);
  await fs.chmod(real, stats.mode & 0o7777);
  await fs.rename(aside, path.join(real, "infra"));
}

export default {
  name: "users",
  description: "Reconciles roster.yaml (additive only, tiers checked against the cluster): accounts and groups, sticky t3 ports in the .env files, /etc/ttyd-user-map, dispatch.json",
  async check(ctx) {
    // Before anything is planned: a tier the cluster disagrees with stops the stage with nothing changed.
    await checkTiers(ctx, ctx.inputs.roster);
    const planned = await planUsers(ctx);
    logSkippedClones(ctx, planned.roster, planned.table, planned.migrations.map((m) => m.user));
    return { changes: planned.changes, managed: managedBy(planned.files) };
  },
  async apply(ctx) {
    // Planned again (as units does); what it would log, check has said already.
    const { steps, migrations, files, envChanged, legacyPorts, changes } = await planUsers({ ...ctx, log: { ...ctx.log, info: () => {} } });
    for (const step of steps) await plan.applyAccountStep(ctx, step);
    if (steps.length > 0) ctx.accounts.reload();
    for (const m of migrations) await migrateLayout(ctx, m.code);
    // Recorded before the env files change: a build that stops after this still restarts them.
    await addPendingRestarts(ctx, envChanged.map((u) => `t3-serve@${u}.service`));
    await applyResources(ctx, files);
    if (legacyPorts) await fs.rm(hostPath(ctx, plan.LEGACY_PORTS_FILE), { force: true });
    return changes;
  },
} satisfies Stage;
