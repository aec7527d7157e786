// The instances that were busy when t3 changed version move later, once
// idle (docs/devvm.md, "t3 stays up"): t3-migrate-idle.timer runs this
// stage in the night window, and every build runs it too. Each marker in
// /var/lib/t3-autoupdate/deferred/ is one user; it is cleared once the
// instance has restarted since it was written (by this stage, the
// watchdog, a reboot), or is not running (its next start reads the new t3).
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import type { Stage } from "../lib/core/stage.ts";
import { offlineReason, systemctl, t3ServeInstance } from "../lib/machine/systemd.ts";
import { busyReason, checkedBy, restartAndSignIn } from "../lib/tools/t3-canary.ts";
import {
  freezeHolds,
  readDeferred,
  removeDeferred,
  T3_DEFERRED_DIR,
  T3_FREEZE,
  type DeferredMarker,
} from "../lib/tools/t3-gate.ts";
import { backUpBeforeVersionChange } from "../lib/tools/t3-prebump-backup.ts";
import { activeInstall } from "../lib/tools/npm-active.ts";

type Verdict =
  | { marker: DeferredMarker; do: "forget"; why: string }
  | { marker: DeferredMarker; do: "wait"; why: string }
  | { marker: DeferredMarker; do: "move" };

/** When the unit last became active (ms), null when it is not active. */
async function activeSinceMs(ctx: BuildContext, unit: string): Promise<number | null> {
  const shown = await systemctl(ctx, [
    "show",
    "-p",
    "ActiveState",
    "-p",
    "ActiveEnterTimestamp",
    "--timestamp=unix",
    unit,
  ]);
  const prop = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(shown.stdout)?.[1]?.trim() ?? "";
  if (prop("ActiveState") !== "active") return null;
  const seconds = Number(prop("ActiveEnterTimestamp").replace(/^@/, ""));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

async function judge(ctx: BuildContext, marker: DeferredMarker): Promise<Verdict> {
  const unit = t3ServeInstance(marker.user);
  const since = await activeSinceMs(ctx, unit);
  if (since === null)
    return { marker, do: "forget", why: `${unit} is not running; its next start runs the t3 installed` };
  // Whole seconds: a restart in the same second as the marker counts as before it.
  if (since > marker.writtenMs)
    return { marker, do: "forget", why: `${unit} has restarted since the marker was written` };
  const busy = await busyReason(ctx, marker.user, { strict: true });
  if (busy) return { marker, do: "wait", why: busy };
  return { marker, do: "move" };
}

const describe = (v: Verdict, to: string | null): Change =>
  v.do === "forget"
    ? action(`DEFERRED ${v.marker.user}: forget the marker (${v.why})`)
    : action(
        `DEFERRED ${v.marker.user}: restart t3-serve@${v.marker.user} onto t3 ${to ?? v.marker.to}, checked by a sign-in through t3-dispatch`,
      );

async function plan(ctx: BuildContext): Promise<Verdict[] | { skip: string }> {
  const { markers, unreadable } = readDeferred(ctx);
  for (const file of unreadable)
    ctx.log.info(`DEFERRED ${file} is no marker (a user name holding a version); left alone`);
  if (markers.length === 0) return [];
  const offline = offlineReason(ctx);
  if (offline) return { skip: `${markers.length} deferred instance(s) wait: ${offline}` };
  const frozen = freezeHolds(ctx);
  if (frozen !== null) {
    ctx.log.info(
      `FROZEN the deferred instances (${markers.map((m) => m.user).join(", ")}) stay where they are: ${T3_FREEZE} exists`,
    );
    return { skip: `FROZEN: a freeze holds: ${T3_FREEZE} exists, so no deferred instance moves` };
  }
  const verdicts: Verdict[] = [];
  for (const marker of markers) {
    const verdict = await judge(ctx, marker);
    if (verdict.do === "wait")
      ctx.log.info(`DEFERRED ${marker.user}: still waits (${verdict.why}); tried again next round`);
    verdicts.push(verdict);
  }
  return verdicts;
}

export default {
  name: "t3-migrate-idle",
  description: `Moves the t3 instances that were busy at a t3 switch (markers in ${T3_DEFERRED_DIR}) once idle: a copy of the database, the restart, a sign-in through t3-dispatch`,
  async check(ctx) {
    const verdicts = await plan(ctx);
    if ("skip" in verdicts) return verdicts;
    const to = (await activeInstall(ctx, "t3", "t3"))?.version ?? null;
    return { changes: verdicts.filter((v) => v.do !== "wait").map((v) => describe(v, to)), managed: [] };
  },
  async apply(ctx) {
    // Looked at again, one user at a time: someone may have started a turn since check.
    const { markers } = readDeferred(ctx);
    const to = (await activeInstall(ctx, "t3", "t3"))?.version ?? null;
    const changes: Change[] = [];
    const failed: string[] = [];
    for (const marker of markers) {
      const verdict = await judge(ctx, marker);
      const user = marker.user;
      if (verdict.do === "wait") continue;
      if (verdict.do === "forget") {
        removeDeferred(ctx, user);
        ctx.log.info(`DEFERRED ${user}: marker cleared (${verdict.why})`);
        changes.push(describe(verdict, to));
        continue;
      }
      const entry = ctx.inputs.roster[user];
      if (!entry || entry.parked) {
        ctx.log.info(`DEFERRED ${user}: not an active user of the roster; left as it runs`);
        continue;
      }
      // The same copy as at the switch, made now: a rollback puts back the newest one.
      // A marker without from= (the live updater's) names the copy state-prebump-unknown-TO.
      if (to) await backUpBeforeVersionChange(ctx, marker.from ?? "unknown", to, (u) => u === user);
      ctx.log.info(`DEFERRED ${user}: idle; restarting t3-serve@${user} onto t3 ${to ?? marker.to}`);
      const signedIn = await restartAndSignIn(ctx, user, entry.authentik_user);
      removeDeferred(ctx, user);
      if (signedIn.ok) {
        ctx.log.info(`DEFERRED ${user}: moved to t3 ${to ?? marker.to}; ${checkedBy(ctx)}`);
        changes.push(describe(verdict, to));
      } else {
        ctx.log.info(`DEFERRED ${user}: restarted onto t3 ${to ?? marker.to}, but its check failed: ${signedIn.saw}`);
        failed.push(`${user}: ${signedIn.saw}`);
      }
    }
    if (failed.length > 0)
      throw new UserError(
        `after their deferred restart onto t3 ${to ?? "(none)"}, a sign-in through t3-dispatch failed for ${failed.join("; ")}`,
        "see `journalctl -u t3-serve@USER` and t3-dispatch's journal; each user's copy from before is in /var/backups/t3-state/USER",
      );
    return changes;
  },
} satisfies Stage;
