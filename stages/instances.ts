import { existsSync } from "node:fs";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import type { Roster } from "../lib/inputs/roster.ts";
import type { Stage } from "../lib/core/stage.ts";
import {
  activeUnits,
  enabledUnits,
  offlineReason,
  readPendingRestarts,
  requireStayedUp,
  systemctl,
  T3_SERVE_TEMPLATE,
  t3ServeInstance,
  writePendingRestarts,
} from "../lib/machine/systemd.ts";
import { agentsUnder } from "../lib/machine/agents.ts";

interface InstancePlan {
  enable: string[];
  disable: string[];
  start: string[];
  stop: string[];
  /** Restarts due (a changed env file or unit) on idle instances. */
  restart: string[];
  /** Due restarts that no running instance needs any more (it starts, stops or is gone). */
  settled: string[];
}

/** The t3-serve@ instances: running for active users, stopped for parked ones; a due restart happens only on an idle one. */
async function planInstances(ctx: BuildContext, roster: Roster): Promise<InstancePlan> {
  const none: InstancePlan = { enable: [], disable: [], start: [], stop: [], restart: [], settled: [] };
  if (!existsSync(hostPath(ctx, T3_SERVE_TEMPLATE))) {
    ctx.log.info(`t3-serve@ instances left alone: ${T3_SERVE_TEMPLATE} is not installed yet (stage units)`);
    return none;
  }
  const users = Object.keys(roster).sort();
  const running = users.filter((u) => !roster[u]!.parked).map(t3ServeInstance);
  const parked = users.filter((u) => roster[u]!.parked).map(t3ServeInstance);
  const enabled = await enabledUnits(ctx, [...running, ...parked]);
  const result = {
    ...none,
    enable: running.filter((u) => !enabled.has(u)),
    disable: parked.filter((u) => enabled.has(u)),
  };
  const offline = offlineReason(ctx);
  if (offline) {
    ctx.log.info(`t3-serve@ instances ${offline}`);
    return result;
  }
  const active = await activeUnits(ctx, [...running, ...parked]);
  result.start = running.filter((u) => !active.has(u));
  result.stop = parked.filter((u) => active.has(u));
  const due = (await readPendingRestarts(ctx)).filter((u) => u.startsWith("t3-serve@"));
  for (const unit of due) {
    if (!running.includes(unit) || !active.has(unit)) {
      result.settled.push(unit);
      continue;
    }
    const agents = await agentsUnder(ctx, unit);
    if (agents.length === 0) result.restart.push(unit);
    else ctx.log.info(`restart of ${unit} still due: busy (${agents.join(", ")})`);
  }
  return result;
}

function instanceChanges(p: InstancePlan): Change[] {
  return [
    ...p.enable.map((u) => action(`enable ${u}`)),
    ...p.disable.map((u) => action(`disable ${u} (parked)`)),
    ...p.start.map((u) => action(`start ${u}`)),
    ...p.stop.map((u) => action(`stop ${u} (parked)`)),
    ...p.restart.map((u) => action(`restart ${u}`)),
    ...p.settled.map((u) =>
      action(`forget the due restart of ${u}: it is not running (a start reads the new settings)`),
    ),
  ];
}

export default {
  name: "instances",
  firstBoot: "the users' instances start on the machine",
  description:
    "Runs t3-serve@USER for every active roster user (parked: stopped and disabled); restarts one only when no agent session runs under it",
  async check(ctx) {
    const planned = await planInstances(ctx, ctx.inputs.roster);
    return { changes: instanceChanges(planned), managed: [] };
  },
  async apply(ctx) {
    // Looked at again on purpose, not check's plan: a restart must find the
    // instance idle now (an agent session may have started since check), and
    // the instances may have changed meanwhile; check has logged what it found.
    const p = await planInstances({ ...ctx, log: { ...ctx.log, info: () => {} } }, ctx.inputs.roster);
    if (p.enable.length > 0) await systemctl(ctx, ["enable", ...p.enable]);
    if (p.disable.length > 0) await systemctl(ctx, ["disable", ...p.disable]);
    if (offlineReason(ctx)) return instanceChanges(p);
    // Stopped first: a parked user's port is free before anything starts.
    if (p.stop.length > 0) await systemctl(ctx, ["stop", ...p.stop]);
    if (p.start.length > 0) await systemctl(ctx, ["start", ...p.start]);
    for (const unit of p.restart) await systemctl(ctx, ["restart", unit]);
    await requireStayedUp(ctx, [...p.start, ...p.restart]);
    const done = new Set([...p.restart, ...p.settled]);
    if (done.size > 0)
      await writePendingRestarts(
        ctx,
        (await readPendingRestarts(ctx)).filter((u) => !done.has(u)),
      );
    return instanceChanges(p);
  },
} satisfies Stage;
