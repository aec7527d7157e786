import { existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { envValue, setEnvValue, withoutEnvValue } from "../lib/machine/env-file.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, checkResources, managedBy, type Resource } from "../lib/machine/files.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import { inspect, inspectForWriting, readUserFile, unlessUnsafe } from "../lib/machine/safe-path.ts";
import { Secret } from "../lib/core/secret.ts";
import { groupsOf, readAccountTable } from "../lib/machine/accounts.ts";
import { envFile } from "../lib/users/roster-accounts.ts";
import type { Stage } from "../lib/core/stage.ts";
import { addPendingRestarts, t3ServeInstance } from "../lib/machine/systemd.ts";
import { CODEX_GROUP, TARGETS } from "./vault-tokens.ts";

// What vault-tokens staged, consumed here (docs/devvm.md lesson: a staged secret
// that nothing consumes is a manual step lost on rebuild).
const SHARED_CLAUDE_TOKEN = TARGETS.find((t) => t.field === "claude_oauth_token")!.path;
const SHARED_CODEX_AUTH = TARGETS.find((t) => t.field === "codex_shared_auth_json")!.path;
const TOKEN_KEY = "CLAUDE_CODE_OAUTH_TOKEN";
// What claude-auth-sync writes from the user's setup token, and the copy of it t3-serve@ reads (see its unit:
// systemd reads EnvironmentFile= as root, so never a path in the user's home).
export const ownTokenFile = (home: string) => path.join(home, ".config", "claude-auth-sync", "claude-oauth.env");
export const ownTokenCopy = (user: string) => `/etc/t3-serve/${user}.claude-oauth.env`;
const SETUP_TOKEN = /^sk-ant-oat01-[A-Za-z0-9_-]+$/;
/** Codex has no machine-wide policy layer: ~/.codex/AGENTS.md mirrors the managed claudeMd under this line. */
export const AGENTS_HEADER =
  "<!-- devvm: the org's rules for agents, mirrored from /etc/claude-code/managed-settings.json by the builder. Edits are overwritten; delete this line to make the file your own. -->";

interface LoginPlan {
  resources: Resource[];
  /** Users to add to codex-shared. */
  joinCodex: string[];
  /** Instances that must restart (when idle) to see a new token or group. */
  restarts: string[];
  tokenFor: string[];
  /** Users with a login of their own whose .env loses the shared token's line. */
  withdrawFrom: string[];
  /** Users whose token copy for t3-serve@ is made or changed; and copies whose source is gone. */
  copyFor: string[];
  removeCopies: string[];
}

function agentsMirror(ctx: BuildContext): string {
  const { claudeMd } = JSON.parse(repoFile(ctx, "claude-code/managed-settings.json").toString("utf8")) as {
    claudeMd: string;
  };
  return `${AGENTS_HEADER}\n\n${claudeMd.trimEnd()}\n`;
}

async function planLogins(ctx: BuildContext): Promise<LoginPlan> {
  const exists = (p: string) => existsSync(hostPath(ctx, p));
  const table = readAccountTable(ctx);
  // A Secret: whatever the build prints from here on is scrubbed of it.
  const token = exists(SHARED_CLAUDE_TOKEN)
    ? new Secret(readFileSync(hostPath(ctx, SHARED_CLAUDE_TOKEN), "utf8").trim())
    : undefined;
  const codexGroup = table.groups.has(CODEX_GROUP);
  const mirror = agentsMirror(ctx);
  const plan: LoginPlan = {
    resources: [],
    joinCodex: [],
    restarts: [],
    tokenFor: [],
    withdrawFrom: [],
    copyFor: [],
    removeCopies: [],
  };
  for (const [name, user] of Object.entries(ctx.inputs.roster).sort(([a], [b]) => a.localeCompare(b))) {
    const account = table.users.get(name);
    if (!account) continue;
    const owner = { owner: name, group: ctx.accounts.groupName(account.gid) };
    // The user's own login: their setup token (copied for t3-serve@), or Claude's credentials file.
    // (What is in their home is looked at without following a link they planted; one there decides nothing.)
    const env = envFile(name);
    const ownFile = await unlessUnsafe(ctx, async () => readUserFile(ctx, ownTokenFile(account.home)));
    // undefined: a planted link was named, and decides nothing (neither the shared token's line nor a copy).
    const ownLogin =
      ownFile === undefined
        ? undefined
        : await unlessUnsafe(
            ctx,
            async () =>
              ownFile !== null || inspect(ctx, path.join(account.home, ".claude", ".credentials.json")) !== null,
          );
    const own = ownFile ? envValue(ownFile.toString("utf8"), TOKEN_KEY) : undefined;
    if (ownFile && !(own && SETUP_TOKEN.test(own)))
      warn(
        ctx,
        `${ownTokenFile(account.home)} holds no ${TOKEN_KEY}=sk-ant-oat01-... line; t3-serve@${name} is not given it`,
      );
    if (own && SETUP_TOKEN.test(own)) {
      const copy: Resource = {
        kind: "file",
        path: ownTokenCopy(name),
        mode: 0o600,
        secret: true,
        content: `${TOKEN_KEY}=${new Secret(own).reveal()}\n`,
      };
      if ((await checkResources(ctx, [copy])).length > 0) {
        plan.resources.push(copy);
        plan.copyFor.push(name);
        plan.restarts.push(t3ServeInstance(name));
      }
    } else if (ownFile !== undefined && exists(ownTokenCopy(name))) {
      plan.removeCopies.push(name);
      plan.restarts.push(t3ServeInstance(name));
    }
    // No shared token once the user has a login of their own: only the line carrying the shared value goes.
    if (ownLogin === true && token?.length && exists(env)) {
      const text = readFileSync(hostPath(ctx, env), "utf8");
      const without = withoutEnvValue(text, TOKEN_KEY, token.reveal());
      if (without !== text) {
        plan.resources.push({ kind: "file", path: env, mode: 0o600, secret: true, content: without });
        plan.withdrawFrom.push(name);
        plan.restarts.push(t3ServeInstance(name));
      }
    }
    // The shared Claude login: non-admins without a login of their own, appended once, never replacing a line.
    if (user.tier !== "admin" && token?.length && exists(env) && ownLogin === false) {
      const text = readFileSync(hostPath(ctx, env), "utf8");
      if (envValue(text, TOKEN_KEY) === undefined) {
        plan.resources.push({
          kind: "file",
          path: env,
          mode: 0o600,
          secret: true,
          content: setEnvValue(text, TOKEN_KEY, token.reveal()),
        });
        plan.tokenFor.push(name);
        plan.restarts.push(t3ServeInstance(name));
      }
    }
    // The shared Codex login: the group that may read it, and a link unless the user has their own file.
    if (codexGroup && !groupsOf(table, name).has(CODEX_GROUP)) {
      plan.joinCodex.push(name);
      plan.restarts.push(t3ServeInstance(name));
    }
    plan.resources.push(...((await unlessUnsafe(ctx, () => codexFiles(ctx, account.home, owner, mirror))) ?? []));
  }
  return plan;
}

/** ~/.codex, its auth.json link and the AGENTS.md mirror, as far as the user has not made them their own. */
function codexFiles(
  ctx: BuildContext,
  home: string,
  own: { owner: string; group: string },
  mirror: string,
): Resource[] {
  const codex = path.join(home, ".codex");
  const folder = inspectForWriting(ctx, codex);
  const link = existsSync(hostPath(ctx, SHARED_CODEX_AUTH)) && !inspect(ctx, path.join(codex, "auth.json"));
  const resources: Resource[] = [];
  if (!folder && link) resources.push({ kind: "dir", path: codex, mode: 0o700, ...own });
  if (link) resources.push({ kind: "symlink", path: path.join(codex, "auth.json"), target: SHARED_CODEX_AUTH, ...own });
  // The mirror, for everyone who has ~/.codex; a file without the header is the user's own.
  const agents = path.join(codex, "AGENTS.md");
  const text = folder ? readUserFile(ctx, agents) : null;
  const mine = text !== null && !text.toString("utf8").startsWith(AGENTS_HEADER);
  if ((folder || link) && !mine) resources.push({ kind: "file", path: agents, mode: 0o644, content: mirror, ...own });
  return resources;
}

function changesOf(plan: LoginPlan, fileChanges: Change[]): Change[] {
  return [
    ...plan.tokenFor.map((u) =>
      action(`add the shared Claude login to ${envFile(u)} (restart of t3-serve@${u} due, when idle)`),
    ),
    ...plan.withdrawFrom.map((u) =>
      action(
        `remove the shared Claude login from ${envFile(u)}: ${u} has their own (restart of t3-serve@${u} due, when idle)`,
      ),
    ),
    ...plan.copyFor.map((u) =>
      action(`copy ${u}'s own Claude login to ${ownTokenCopy(u)} for t3-serve@${u} (restart due, when idle)`),
    ),
    ...plan.removeCopies.map((u) =>
      action(`remove ${ownTokenCopy(u)}: ${u}'s claude-oauth.env is gone (restart of t3-serve@${u} due, when idle)`),
    ),
    ...plan.joinCodex.map((u) => action(`add ${u} to ${CODEX_GROUP} (the shared Codex login)`)),
    // The token files' own changes are the lines above; their diffs are never shown.
    ...fileChanges.filter(
      (c) =>
        !(
          "path" in c &&
          ([...plan.tokenFor, ...plan.withdrawFrom].some((u) => envFile(u) === c.path) ||
            plan.copyFor.some((u) => ownTokenCopy(u) === c.path))
        ),
    ),
  ];
}

export default {
  name: "logins",
  firstBoot: "it acts on the machine's users and the tokens staged there",
  description:
    "Gives users the shared Claude login (in their .env, unless they have their own; then it is taken out, and their own setup token copied for t3-serve@) and the shared Codex login (codex-shared, ~/.codex/auth.json), and mirrors the org's rules into ~/.codex/AGENTS.md",
  async check(ctx) {
    if (underRoot(ctx)) return { skip: "logins are given to the machine's own accounts, not under --root" };
    const plan = await planLogins(ctx);
    // Only the mirrors are kept by this stage; the rest is made once and is the user's (the env files are users').
    const mirrors = plan.resources.filter((r) => r.kind === "file" && !r.secret);
    const changes = changesOf(plan, await checkResources(ctx, plan.resources));
    return { changes, managed: managedBy(mirrors), plan };
  },
  async apply(ctx, { plan, changes }) {
    // Recorded first: a build that stops after the env files change still restarts them.
    await addPendingRestarts(ctx, plan.restarts);
    for (const user of plan.joinCodex) await run(ctx, "usermod", ["-a", "-G", CODEX_GROUP, user]);
    await applyResources(ctx, plan.resources);
    for (const user of plan.removeCopies) rmSync(hostPath(ctx, ownTokenCopy(user)), { force: true });
    return changes;
  },
} satisfies Stage<LoginPlan>;
