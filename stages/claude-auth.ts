import path from "node:path";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import type { Secret } from "../lib/core/secret.ts";
import type { Stage } from "../lib/core/stage.ts";
import { readAccountTable } from "../lib/machine/accounts.ts";
import { applyResources, checkResources, managedBy, type Resource } from "../lib/machine/files.ts";
import { inspect, unlessUnsafe } from "../lib/machine/safe-path.ts";
import { activeUnits, enabledUnits, offlineReason, systemctl, UNIT_DIR } from "../lib/machine/systemd.ts";
import { createOrphanToken } from "../lib/sources/vault-token-create.ts";
import { vaultToken } from "../lib/sources/vault-kv.ts";
import { existsSync } from "node:fs";

// Each user's own Claude login, checked and kept in Vault by
// claude-auth-sync@USER (files/service/claude-auth-sync): this stage gives
// it what it needs (the folders its sandbox may write, 0700 before it runs;
// VAULT_ADDR; the user's scoped Vault token, minted once) and runs its
// timer for users with claude_auth who are not parked, stopping it for
// the others.

export const SYNC_DEFAULTS = "/etc/default/claude-auth-sync";
export const syncTimer = (user: string) => `claude-auth-sync@${user}.timer`;
export const syncService = (user: string) => `claude-auth-sync@${user}.service`;
export const vaultTokenFile = (home: string) => path.join(home, ".config", "claude-auth-sync", "vault-token");
// Orphan and periodic: renewed each run (every 6 hours), it lives as long as it is used.
const PERIOD = "768h";

interface Owner {
  owner: string;
  group: string;
}

interface SyncPlan {
  resources: Resource[];
  mint: Array<{ user: string; home: string } & Owner>;
  adminToken?: Secret;
  enable: string[];
  start: string[];
  disable: string[];
  stop: string[];
}

/** The folders the sync's sandbox writes: its own two kept 0700; the user's ~/.claude and parents made only when missing. */
function folders(ctx: BuildContext, home: string, own: Owner): Resource[] {
  const ours = [path.join(home, ".config", "claude-auth-sync"), path.join(home, ".local", "state", "claude-auth-sync")];
  const parents = [".claude", ".config", ".local", ".local/state"].map((p) => path.join(home, p));
  return [...parents.filter((p) => inspect(ctx, p) === null), ...ours].map((p): Resource => ({
    kind: "dir",
    path: p,
    mode: 0o700,
    ...own,
  }));
}

async function planSync(ctx: BuildContext): Promise<SyncPlan> {
  const table = readAccountTable(ctx);
  const plan: SyncPlan = {
    resources: [{ kind: "file", path: SYNC_DEFAULTS, mode: 0o644, content: syncDefaults(ctx) }],
    mint: [],
    enable: [],
    start: [],
    disable: [],
    stop: [],
  };
  const on: string[] = [];
  const off: string[] = [];
  for (const [name, user] of Object.entries(ctx.inputs.roster).sort(([a], [b]) => a.localeCompare(b))) {
    const account = table.users.get(name);
    if (!account) continue;
    if (!user.claude_auth || user.parked) {
      off.push(name);
      continue;
    }
    on.push(name);
    const own = { owner: name, group: ctx.accounts.groupName(account.gid) };
    // A link the user planted on the way is named and their part left out; everyone else goes on.
    const mine = await unlessUnsafe(ctx, async () => {
      const wanted = folders(ctx, account.home, own);
      await checkResources(ctx, wanted);
      return { wanted, hasToken: inspect(ctx, vaultTokenFile(account.home)) !== null };
    });
    if (!mine) continue;
    plan.resources.push(...mine.wanted);
    if (!mine.hasToken) plan.mint.push({ user: name, home: account.home, ...own });
  }
  if (plan.mint.length > 0) {
    const found = await vaultToken(ctx);
    if (found.ok) plan.adminToken = found.token;
    else {
      warn(
        ctx,
        `${found.message}: no Vault token minted for ${plan.mint.map((m) => m.user).join(", ")}; their sync skips until one is`,
      );
      plan.mint = [];
    }
  }
  if (!existsSync(hostPath(ctx, `${UNIT_DIR}/claude-auth-sync@.timer`))) {
    ctx.log.info(
      `claude-auth-sync timers left alone: ${UNIT_DIR}/claude-auth-sync@.timer is not installed yet (stage units)`,
    );
    return plan;
  }
  const timers = [...on, ...off].map(syncTimer);
  const enabled = await enabledUnits(ctx, timers);
  plan.enable = on.map(syncTimer).filter((t) => !enabled.has(t));
  plan.disable = off.map(syncTimer).filter((t) => enabled.has(t));
  if (offlineReason(ctx)) return plan;
  const active = await activeUnits(ctx, [...timers, ...off.map(syncService)]);
  plan.start = on.map(syncTimer).filter((t) => !active.has(t));
  plan.stop = [...off.map(syncTimer), ...off.map(syncService)].filter((u) => active.has(u));
  return plan;
}

function syncDefaults(ctx: BuildContext): string {
  return `# Written by the devvm builder (stage claude-auth); edits are overwritten.\nVAULT_ADDR=${ctx.settings.vaultAddr}\n`;
}

function changesOf(plan: SyncPlan, fileChanges: Change[]): Change[] {
  return [
    ...fileChanges,
    ...plan.mint.map((m) =>
      action(`mint ${m.user}'s own Vault token (policy workstation-claude-${m.user}) into ${vaultTokenFile(m.home)}`),
    ),
    ...plan.enable.map((u) => action(`enable ${u}`)),
    ...plan.start.map((u) => action(`start ${u}`)),
    ...plan.disable.map((u) => action(`disable ${u} (claude_auth: false, or parked)`)),
    ...plan.stop.map((u) => action(`stop ${u} (claude_auth: false, or parked)`)),
  ];
}

export default {
  name: "claude-auth",
  firstBoot: "it mints tokens in Vault and runs the users' timers on the machine",
  description:
    "Runs claude-auth-sync@USER's timer for users with claude_auth (not parked): its folders 0700, VAULT_ADDR, and the user's own scoped Vault token, minted once",
  async check(ctx) {
    if (underRoot(ctx)) return { skip: "the login sync is given to the machine's own accounts, not under --root" };
    const plan = await planSync(ctx);
    return {
      changes: changesOf(plan, await checkResources(ctx, plan.resources)),
      managed: managedBy(plan.resources.filter((r) => r.path === SYNC_DEFAULTS)),
      plan,
    };
  },
  async apply(ctx, { plan, changes }) {
    await applyResources(ctx, plan.resources);
    const failed = new Set<string>();
    for (const m of plan.mint) {
      const minted = await createOrphanToken(ctx, ctx.settings.vaultAddr, plan.adminToken!, {
        displayName: `devvm-claude-auth-${m.user}`,
        policies: [`workstation-claude-${m.user}`],
        period: PERIOD,
      });
      if (!minted.ok) {
        warn(ctx, `${minted.message}; ${m.user}'s sync skips until a token is minted`);
        failed.add(vaultTokenFile(m.home));
        continue;
      }
      // 0600 and the user's from its first byte (files.ts writes it whole, then renames it into place).
      await applyResources(ctx, [
        {
          kind: "file",
          path: vaultTokenFile(m.home),
          mode: 0o600,
          owner: m.owner,
          group: m.group,
          secret: true,
          content: `${minted.token.reveal()}\n`,
        },
      ]);
    }
    if (plan.enable.length > 0) await systemctl(ctx, ["enable", ...plan.enable]);
    if (plan.disable.length > 0) await systemctl(ctx, ["disable", ...plan.disable]);
    if (!offlineReason(ctx)) {
      if (plan.stop.length > 0) await systemctl(ctx, ["stop", ...plan.stop]);
      if (plan.start.length > 0) await systemctl(ctx, ["start", ...plan.start]);
    }
    return changes.filter(
      (c) => !(c.kind === "action" && [...failed].some((f) => c.description.endsWith(` into ${f}`))),
    );
  },
} satisfies Stage<SyncPlan>;
