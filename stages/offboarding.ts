import { existsSync, readFileSync } from "node:fs";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot } from "../lib/core/context.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, checkResource } from "../lib/machine/files.ts";
import { appliedRosterFile, readAppliedRoster } from "../lib/users/applied-roster.ts";
import type { Stage } from "../lib/core/stage.ts";
import { syncService, syncTimer } from "./claude-auth.ts";
import { activeUnits, enabledUnits, offlineReason, systemctl, t3ServeInstance } from "../lib/machine/systemd.ts";

// A user dropped from roster.yaml loses access at once and reversibly
// (docs/devvm.md "Per-user", Offboarding): their instance and login sync
// (claude-auth-sync@ and its timer) stopped and disabled,
// their login locked (password and account expiry, so no key or su either),
// gone from the map and dispatch.json (the users stage writes those from the
// roster). Home and account stay; `build.ts offboard USER` deletes them.

interface Shadow {
  password: string;
  expire: string;
}

function readShadow(ctx: BuildContext): Map<string, Shadow> {
  const file = hostPath(ctx, "/etc/shadow");
  const lines = existsSync(file) ? readFileSync(file, "utf8").split("\n") : [];
  return new Map(
    lines
      .filter(Boolean)
      .map((l) => l.split(":"))
      .map(([name, password, , , , , , expire]) => [name!, { password: password ?? "", expire: expire ?? "" }]),
  );
}

const isCut = (s: Shadow) => s.password.startsWith("!") && s.expire === "1";

interface OffboardPlan {
  cut: string[];
  /** Cut users back in the roster: their login opened again. */
  returning: string[];
  stop: string[];
  disable: string[];
  record: ReturnType<typeof appliedRosterFile>;
}

async function planOffboarding(ctx: BuildContext): Promise<OffboardPlan> {
  const roster = Object.keys(ctx.inputs.roster);
  const record = readAppliedRoster(ctx);
  const shadow = readShadow(ctx);
  const departed = [...new Set([...record.users, ...record.cut])]
    .filter((u) => !roster.includes(u) && shadow.has(u))
    .sort();
  const returning = record.cut.filter((u) => roster.includes(u) && shadow.has(u) && isCut(shadow.get(u)!));
  // Every per-user unit the builder runs: the instance and the login sync with its timer.
  const units = departed.flatMap((u) => [t3ServeInstance(u), syncTimer(u), syncService(u)]);
  const enabled = await enabledUnits(ctx, units);
  const active = offlineReason(ctx) ? new Set<string>() : await activeUnits(ctx, units);
  return {
    cut: departed.filter((u) => !isCut(shadow.get(u)!)),
    returning,
    stop: units.filter((u) => active.has(u)),
    disable: units.filter((u) => enabled.has(u)),
    record: appliedRosterFile({ users: roster, cut: departed }),
  };
}

function changesOf(p: OffboardPlan): Change[] {
  return [
    ...p.cut.map((u) =>
      action(
        `cut ${u} (no longer in roster.yaml): lock their login; home and account kept (build.ts offboard ${u} deletes them)`,
      ),
    ),
    ...p.stop.map((u) => action(`stop ${u} (its user left the roster)`)),
    ...p.disable.map((u) => action(`disable ${u} (its user left the roster)`)),
    ...p.returning.map((u) => action(`open ${u}'s login again: back in roster.yaml`)),
  ];
}

export default {
  name: "offboarding",
  firstBoot: "it acts on the machine's accounts",
  description:
    "Cuts users dropped from roster.yaml at once and reversibly: instance and login sync stopped and disabled, login locked; home and account kept",
  async check(ctx) {
    if (underRoot(ctx)) return { skip: "cutting a user needs the machine's own accounts and services, not --root" };
    const p = await planOffboarding(ctx);
    const changes = [...changesOf(p), ...(await checkResource(ctx, p.record))];
    return { changes, managed: [{ path: p.record.path }], plan: p };
  },
  async apply(ctx, { plan: p }) {
    if (p.stop.length > 0) await systemctl(ctx, ["stop", ...p.stop]);
    if (p.disable.length > 0) await systemctl(ctx, ["disable", ...p.disable]);
    // -L: the password; --expiredate 1: the account, which ends key-based and su logins too.
    for (const user of p.cut) await run(ctx, "usermod", ["-L", "--expiredate", "1", user]);
    for (const user of p.returning) {
      await run(ctx, "usermod", ["--expiredate", "", user]);
      // -U takes back only the "!" that -L added; usermod refuses (exit 1) to leave an empty password.
      await run(ctx, "usermod", ["-U", user], { okCodes: [1] });
    }
    return [...changesOf(p), ...(await applyResources(ctx, [p.record]))];
  },
} satisfies Stage<OffboardPlan>;
