// The roster's tiers checked against the cluster's truth before any account
// changes (docs/devvm.md "Per-user"): Vault KV v2 secret/platform, field
// k8s_users, a JSON map from k8s user to { role }. Admins are exempt; a user
// absent there is a pending grant (a warning); a different tier stops the
// users stage. Vault out of reach is a warning (an error with --strict).
import { warn, type BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import type { Roster } from "../inputs/roster.ts";
import { readKvSecret, vaultToken } from "../sources/vault-kv.ts";

export const PLATFORM = { mount: "secret", path: "platform", field: "k8s_users" } as const;

type K8sUsers = Record<string, { role?: unknown } | undefined>;

export interface TierFindings {
  /** Users that k8s_users does not list yet. */
  absent: Array<{ user: string; k8sUser: string }>;
  /** Users whose roster tier is not their cluster role. */
  mismatched: Array<{ user: string; k8sUser: string; tier: string; role: string }>;
}

export function compareTiers(roster: Roster, k8sUsers: K8sUsers): TierFindings {
  const findings: TierFindings = { absent: [], mismatched: [] };
  for (const [user, entry] of Object.entries(roster).sort(([a], [b]) => a.localeCompare(b))) {
    if (entry.tier === "admin") continue;
    const grant = Object.hasOwn(k8sUsers, entry.k8s_user) ? k8sUsers[entry.k8s_user] : undefined;
    if (!grant) findings.absent.push({ user, k8sUser: entry.k8s_user });
    else if (grant.role !== entry.tier)
      findings.mismatched.push({ user, k8sUser: entry.k8s_user, tier: entry.tier, role: String(grant.role) });
  }
  return findings;
}

/** Reads k8s_users and compares; throws on a mismatch, logs warnings otherwise. */
export async function checkTiers(ctx: BuildContext, roster: Roster): Promise<void> {
  const where = `${PLATFORM.mount}/${PLATFORM.path} field ${PLATFORM.field}`;
  const k8sUsers = await readK8sUsers(ctx, where);
  if (!k8sUsers) return;
  const { absent, mismatched } = compareTiers(roster, k8sUsers);
  for (const a of absent)
    warn(ctx, `${a.user} (k8s user ${a.k8sUser}) is not in Vault's ${where} yet: their cluster grant is pending`);
  if (mismatched.length > 0) {
    const lines = mismatched.map(
      (m) => `${m.user} (k8s user ${m.k8sUser}): roster.yaml says tier ${m.tier}, the cluster says ${m.role}`,
    );
    throw new UserError(
      `roster.yaml disagrees with the cluster's tiers (Vault ${where}); no account was changed:\n${lines.join("\n")}`,
      "fix the tier in roster.yaml, or the user's grant in the cluster's configuration",
    );
  }
}

async function readK8sUsers(ctx: BuildContext, where: string): Promise<K8sUsers | undefined> {
  const skipped = (why: string) => {
    if (ctx.strict)
      throw new UserError(
        `cannot check the roster's tiers: ${why}`,
        "set VAULT_ADDR and VAULT_TOKEN (or the admin's ~/.vault-token); without --strict this is a warning",
      );
    warn(ctx, `tiers not checked against the cluster: ${why}`);
    return undefined;
  };
  const found = await vaultToken(ctx);
  if (!found.ok) return skipped(found.message);
  const read = await readKvSecret(
    ctx,
    { address: ctx.settings.vaultAddr, mount: PLATFORM.mount, path: PLATFORM.path },
    found.token,
  );
  if (!read.ok) return skipped(read.message);
  const field = read.fields.get(PLATFORM.field);
  if (!field) return skipped(`Vault's ${PLATFORM.mount}/${PLATFORM.path} has no field ${PLATFORM.field}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(field.reveal());
  } catch {
    return skipped(`Vault's ${where} is not JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    return skipped(`Vault's ${where} is not a map of k8s users`);
  return parsed as K8sUsers;
}
