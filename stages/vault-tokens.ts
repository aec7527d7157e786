import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { underRoot, warn } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, checkResource, managedBy, type Resource } from "../lib/machine/files.ts";
import type { Stage } from "../lib/core/stage.ts";
import type { Secret } from "../lib/core/secret.ts";
import { readKvSecret, vaultToken } from "../lib/sources/vault-kv.ts";

export const KV = { mount: "secret", path: "workstation" } as const;
export const CODEX_GROUP = "codex-shared";

/** Each field of the Vault secret and where it is staged. */
export const TARGETS = [
  { field: "claude_oauth_token", path: "/etc/t3-serve/claude-oauth-token", group: "root", mode: 0o600 },
  { field: "codex_shared_auth_json", path: "/opt/codex-shared/auth.json", group: CODEX_GROUP, mode: 0o660 },
] as const;

const FOLDERS: Resource[] = [
  // Created before anything is written into it (docs/devvm.md lesson: `install -m` did not).
  { kind: "dir", path: "/etc/t3-serve", mode: 0o755 },
  { kind: "dir", path: "/opt/codex-shared", group: CODEX_GROUP, mode: 0o2770 },
];

/**
 * What check read from Vault, for apply: one read per build, so the two
 * cannot differ. The values stay Secrets (printed as [secret]) until a file's
 * content is made of them (resourcesOf).
 */
interface Plan {
  fields: ReadonlyMap<string, Secret>;
  createGroup: boolean;
}

/** The folders, and a file for each field Vault has. */
function resourcesOf(plan: Plan): Resource[] {
  const files: Resource[] = TARGETS.filter((t) => plan.fields.has(t.field)).map((t) => ({
    kind: "file",
    path: t.path,
    group: t.group,
    mode: t.mode,
    content: plan.fields.get(t.field)!.reveal(),
    secret: true,
  }));
  return [...FOLDERS, ...files];
}

/** A source that is not there is a warning that leaves staged files as they are; --strict makes it an error. */
function unavailable(ctx: BuildContext, message: string): { skip: string } {
  if (ctx.strict)
    throw new UserError(
      message,
      "set VAULT_ADDR and VAULT_TOKEN (or the admin's ~/.vault-token); without --strict this is a warning",
    );
  return { skip: `warning: ${message}; staged secrets left as they were` };
}

async function planChanges(ctx: BuildContext, plan: Plan): Promise<Change[]> {
  const changes: Change[] = plan.createGroup
    ? [{ kind: "action", description: `create system group ${CODEX_GROUP}` }]
    : [];
  for (const resource of resourcesOf(plan)) {
    if (!plan.createGroup || !("group" in resource) || resource.group !== CODEX_GROUP)
      changes.push(...(await checkResource(ctx, resource)));
    // Not resolvable before the group exists: shown as what it will be.
    else changes.push({ kind: "owner", path: resource.path, from: "(no group yet)", to: `root:${CODEX_GROUP}` });
  }
  return changes;
}

export default {
  name: "vault-tokens",
  firstBoot: "an image holds no secret: the tokens are read from Vault on the machine",
  description: "Stages the Claude OAuth token and the shared Codex auth.json from Vault (KV v2 secret/workstation)",
  async check(ctx) {
    const found = await vaultToken(ctx);
    if (!found.ok) return unavailable(ctx, found.message);
    const read = await readKvSecret(ctx, { address: ctx.settings.vaultAddr, ...KV }, found.token);
    if (!read.ok) return unavailable(ctx, read.message);
    const missing = TARGETS.filter((t) => !read.fields.has(t.field));
    if (missing.length > 0) {
      const message = `Vault's ${KV.mount}/${KV.path} has no field ${missing.map((t) => t.field).join(", ")}`;
      if (missing.length === TARGETS.length) return unavailable(ctx, message);
      if (ctx.strict) throw new UserError(message, "add the field in Vault; without --strict this is a warning");
      warn(ctx, `${message}; ${missing.map((t) => t.path).join(", ")} left as it was`);
    }
    const plan = { fields: read.fields, createGroup: !ctx.accounts.hasGroup(CODEX_GROUP) };
    // Every target is managed, a missing field's too: the manifest shows what is there.
    const managed = [...managedBy(resourcesOf(plan)), ...missing.map((t) => ({ path: t.path, secret: true }))];
    return { changes: await planChanges(ctx, plan), managed, plan };
  },
  async apply(ctx, { plan }) {
    const changes: Change[] = [];
    if (plan.createGroup) {
      await run(ctx, "groupadd", [...(underRoot(ctx) ? ["--root", ctx.root] : []), "--system", CODEX_GROUP]);
      ctx.accounts.reload();
      changes.push({ kind: "action", description: `create system group ${CODEX_GROUP}` });
    }
    // Each file is written 0600 and given its owner and mode before it is renamed
    // into place (writeFileAtomic): restrictive from the moment it exists.
    return [...changes, ...(await applyResources(ctx, resourcesOf(plan)))];
  },
} satisfies Stage<Plan>;
