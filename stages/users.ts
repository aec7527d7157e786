import { existsSync, promises as fs, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Change } from "../lib/change.ts";
import type { BuildContext } from "../lib/context.ts";
import { hostPath } from "../lib/context.ts";
import { UserError } from "../lib/errors.ts";
import { run } from "../lib/exec.ts";
import { applyResources, checkResource, checkResources, managedBy } from "../lib/files.ts";
import type { Roster } from "../lib/inputs/roster.ts";
import * as plan from "../lib/roster-accounts.ts";
import type { Stage } from "../lib/stage.ts";
import { activeUnits, enabledUnits, offlineReason, readPendingRestarts, systemctl, UNIT_DIR, writePendingRestarts } from "../lib/systemd.ts";

const TEMPLATE = `${UNIT_DIR}/t3-serve@.service`;
const instance = (user: string) => `t3-serve@${user}.service`;
const action = (description: string): Change => ({ kind: "action", description });
// A session of one of these under an instance is someone's work in progress.
const AGENT = /^(claude|codex|opencode)([-.].*)?$/;

interface InstancePlan {
  enable: string[];
  disable: string[];
  start: string[];
  stop: string[];
  restart: string[];
  /** Due but busy, and not yet in the pending-restarts record. */
  defer: string[];
}

/** The t3-serve@ instances: running for active users, stopped for parked ones; a changed env file restarts only an idle one. */
async function planInstances(ctx: BuildContext, roster: Roster, envChanged: Set<string>): Promise<InstancePlan> {
  const none: InstancePlan = { enable: [], disable: [], start: [], stop: [], restart: [], defer: [] };
  if (!existsSync(hostPath(ctx, TEMPLATE))) {
    ctx.log.info(`t3-serve@ instances left alone: ${TEMPLATE} is not installed yet (stage units)`);
    return none;
  }
  const users = Object.keys(roster).sort();
  const running = users.filter((u) => !roster[u]!.parked).map(instance);
  const parked = users.filter((u) => roster[u]!.parked).map(instance);
  const enabled = await enabledUnits(ctx, [...running, ...parked]);
  const result = { ...none, enable: running.filter((u) => !enabled.has(u)), disable: parked.filter((u) => enabled.has(u)) };
  const offline = offlineReason(ctx);
  if (offline) {
    ctx.log.info(`t3-serve@ instances ${offline}`);
    return result;
  }
  const active = await activeUnits(ctx, [...running, ...parked]);
  const pending = new Set(await readPendingRestarts(ctx));
  result.start = running.filter((u) => !active.has(u));
  result.stop = parked.filter((u) => active.has(u));
  for (const user of users.filter((u) => !roster[u]!.parked && active.has(instance(u)))) {
    const unit = instance(user);
    if (!envChanged.has(user) && !pending.has(unit)) continue;
    const agents = await agentsUnder(ctx, unit);
    if (agents.length === 0) result.restart.push(unit);
    else if (pending.has(unit)) ctx.log.info(`restart of ${unit} still due: busy (${agents.join(", ")})`);
    else result.defer.push(unit);
  }
  return result;
}

/** Agent processes (name and pid) in the unit's cgroup, else among its main process's descendants. */
async function agentsUnder(ctx: BuildContext, unit: string): Promise<string[]> {
  const shown = (await systemctl(ctx, ["show", "-p", "MainPID", "-p", "ControlGroup", unit])).stdout;
  const prop = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(shown)?.[1] ?? "";
  let pids = readLines(`/sys/fs/cgroup${prop("ControlGroup")}/cgroup.procs`);
  if (pids.length === 0 && Number(prop("MainPID")) > 0) pids = descendants(prop("MainPID"));
  return pids.flatMap((pid) => {
    const argv = readFileSafe(`/proc/${pid}/cmdline`).split("\0").slice(0, 2).map((a) => path.basename(a));
    const names = [readFileSafe(`/proc/${pid}/comm`).trim(), ...argv];
    const agent = names.find((n) => AGENT.test(n));
    return agent ? [`${agent} pid ${pid}`] : [];
  });
}

function descendants(pid: string): string[] {
  const tasks = existsSync(`/proc/${pid}/task`) ? readdirSync(`/proc/${pid}/task`) : [];
  const children = tasks.flatMap((t) => readFileSafe(`/proc/${pid}/task/${t}/children`).split(/\s+/).filter(Boolean));
  return [pid, ...children.flatMap(descendants)];
}

const readFileSafe = (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
};
const readLines = (file: string) => readFileSafe(file).split("\n").filter(Boolean);

function instanceChanges(p: InstancePlan): Change[] {
  return [
    ...p.enable.map((u) => action(`enable ${u}`)),
    ...p.disable.map((u) => action(`disable ${u} (parked)`)),
    ...p.start.map((u) => action(`start ${u}`)),
    ...p.stop.map((u) => action(`stop ${u} (parked)`)),
    ...p.restart.map((u) => action(`restart ${u}`)),
    ...p.defer.map((u) => action(`restart of ${u} recorded as pending: an agent session is running under it`)),
  ];
}

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
  const files = plan.userFiles(roster, plan.allocatePorts(plan.readPorts(ctx), Object.keys(roster)));
  const envChanged = new Set<string>();
  for (const user of Object.keys(roster)) {
    const env = files.managed.find((r) => r.path === plan.envFile(user))!;
    if ((await checkResource(ctx, env)).some((c) => c.kind === "content")) envChanged.add(user);
  }
  const migrations = plan.layoutMigrations(ctx, roster, table);
  const instances = await planInstances(ctx, roster, envChanged);
  // Each file's check names its missing parents (/etc/t3-serve) again: listed once.
  const changes = unique([
    ...steps.map(plan.describeStep),
    ...migrations.map((m) => action(`move ${m.code} to ${m.code}/infra (code_layout workspace)`)),
    ...(await checkResources(ctx, [...files.managed, files.ports])),
    ...instanceChanges(instances),
  ]);
  return { roster, table, steps, files, migrations, instances, changes };
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

/**
 * An instance that dies right after its start is a failure to show, not a
 * start that quietly repeats on every run (t3 serve cannot write its home).
 */
async function requireStayedUp(ctx: BuildContext, units: string[]): Promise<void> {
  if (units.length === 0) return;
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const active = await activeUnits(ctx, units);
  const down = units.filter((unit) => !active.has(unit));
  if (down.length === 0) return;
  const logs = await Promise.all(
    down.map(async (unit) => `${unit}:\n${(await run(ctx, "journalctl", ["-u", unit, "-n", "5", "--no-pager", "-o", "cat"], { okCodes: [1] })).stdout.trim()}`),
  );
  throw new UserError(`${down.join(", ")} did not stay up after starting:\n${logs.join("\n")}`, "see `journalctl -u UNIT`; the next build starts it again");
}

export default {
  name: "users",
  description: "Reconciles roster.yaml (additive only): accounts and groups, sticky t3 ports, /etc/ttyd-user-map, the t3-serve@USER instances",
  async check(ctx) {
    const planned = await planUsers(ctx);
    logSkippedClones(ctx, planned.roster, planned.table, planned.migrations.map((m) => m.user));
    return { changes: planned.changes, managed: managedBy(planned.files.managed) };
  },
  async apply(ctx) {
    // Planned again (as units does); what it would log, check has said already.
    const { steps, migrations, files, instances: p, changes } = await planUsers({ ...ctx, log: { ...ctx.log, info: () => {} } });
    for (const step of steps) await plan.applyAccountStep(ctx, step);
    if (steps.length > 0) ctx.accounts.reload();
    for (const m of migrations) await migrateLayout(ctx, m.code);
    const pending = await readPendingRestarts(ctx);
    // Recorded before the env files change: a build that stops after this still restarts them.
    if (p.restart.length + p.defer.length > 0) await writePendingRestarts(ctx, [...pending, ...p.restart, ...p.defer]);
    await applyResources(ctx, [...files.managed, files.ports]);
    if (p.enable.length > 0) await systemctl(ctx, ["enable", ...p.enable]);
    if (p.disable.length > 0) await systemctl(ctx, ["disable", ...p.disable]);
    if (offlineReason(ctx)) return changes;
    if (p.stop.length > 0) await systemctl(ctx, ["stop", ...p.stop]);
    if (p.start.length > 0) await systemctl(ctx, ["start", ...p.start]);
    for (const unit of p.restart) await systemctl(ctx, ["restart", unit]);
    await requireStayedUp(ctx, [...p.start, ...p.restart]);
    const done = new Set([...p.restart, ...p.start, ...p.stop]);
    if (p.defer.length > 0 || pending.some((u) => done.has(u))) await writePendingRestarts(ctx, [...pending, ...p.defer].filter((u) => !done.has(u)));
    return changes;
  },
} satisfies Stage;
