// What roster.yaml asks of the machine's accounts, planned as data: the
// groups and accounts to create, the groups to add (never to remove), the
// sticky t3 ports, /etc/ttyd-user-map, /etc/ttyd-admins and the per-user
// env files. The commands that change accounts are the small functions at
// the end; the planning is pure, so it is tested without a machine.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, chown } from "node:fs/promises";
import path from "node:path";
import type { Change } from "../core/change.ts";
import type { BuildContext } from "../core/context.ts";
import { hostPath, underRoot } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { run } from "../machine/exec.ts";
import { envValue, setEnvValue } from "../machine/env-file.ts";
import { lstatOrNull, type Resource } from "../machine/files.ts";
import { OS_USER, type Roster, type RosterUser } from "../inputs/roster.ts";
import { DISPATCH_PORT, STATE_DIR } from "../machine/layout.ts";
import { groupsOf, type AccountTable } from "../machine/accounts.ts";

export const TIER_GROUPS: Record<RosterUser["tier"], string> = {
  admin: "devvm-admin",
  "power-user": "devvm-power-user",
  "namespace-owner": "devvm-namespace-owner",
};
export const ADMIN_GROUPS = ["sudo", "docker", "code-shared"] as const;
/** Groups that come with a package; the builder never creates them. */
const PACKAGE_GROUPS = new Set(["sudo"]);

export function wantedGroups(user: RosterUser): string[] {
  return [TIER_GROUPS[user.tier], ...(user.tier === "admin" ? ADMIN_GROUPS : [])];
}

export type AccountStep =
  | { kind: "create-group"; group: string }
  | { kind: "create-user"; user: string; groups: string[] }
  | { kind: "add-groups"; user: string; groups: string[] };

/**
 * Additive only: missing groups and accounts are created, missing
 * memberships added. Nothing is ever removed, locked or replaced, so an
 * existing user's extra groups and home stay as they are.
 */
export function planAccounts(roster: Roster, table: AccountTable): AccountStep[] {
  const entries = Object.entries(roster).sort(([a], [b]) => a.localeCompare(b));
  const needed = [...new Set(entries.flatMap(([, user]) => wantedGroups(user)))].sort();
  const missingFromPackages = needed.filter((g) => PACKAGE_GROUPS.has(g) && !table.groups.has(g));
  if (missingFromPackages.length > 0) {
    throw new UserError(
      `group ${missingFromPackages.join(", ")} is missing on the machine; admins need it`,
      "install the sudo package (add sudo to packages.txt)",
    );
  }
  const steps: AccountStep[] = needed
    .filter((g) => !table.groups.has(g))
    .map((group) => ({ kind: "create-group", group }));
  for (const [name, user] of entries) {
    if (!table.users.has(name)) {
      steps.push({ kind: "create-user", user: name, groups: wantedGroups(user) });
      continue;
    }
    const has = groupsOf(table, name);
    const missing = wantedGroups(user).filter((g) => !has.has(g));
    if (missing.length > 0) steps.push({ kind: "add-groups", user: name, groups: missing });
  }
  return steps;
}

export function describeStep(step: AccountStep): Change {
  switch (step.kind) {
    case "create-group":
      return { kind: "action", description: `create system group ${step.group}` };
    case "create-user":
      return { kind: "action", description: `create account ${step.user} (groups ${step.groups.join(", ")})` };
    case "add-groups":
      return { kind: "action", description: `add ${step.user} to ${step.groups.join(", ")}` };
  }
}

// ---- sticky ports ---------------------------------------------------------

export type PortTable = Record<string, number>;

/** A PortTable without a prototype: a user named like an Object property (an env file on disk may be) is only ever their own entry. */
const portTable = (from: PortTable = {}): PortTable => Object.assign(Object.create(null) as PortTable, from);

export const ENV_DIR = "/etc/t3-serve";
export const envFile = (user: string) => `${ENV_DIR}/${user}.env`;
export const FIRST_PORT = 3773;
export { DISPATCH_PORT } from "../machine/layout.ts";
/** The port record an earlier builder kept beside the .env files; those files are the record now. */
export const LEGACY_PORTS_FILE = `${STATE_DIR}/ports.json`;

/** Every USER.env in /etc/t3-serve: its text, and the T3_PORT it gives (a departed user's port stays taken). */
export interface EnvFiles {
  texts: Map<string, string>;
  ports: PortTable;
}

export function readEnvFiles(ctx: Pick<BuildContext, "root">): EnvFiles {
  const dir = hostPath(ctx, ENV_DIR);
  const names = existsSync(dir)
    ? readdirSync(dir)
        .filter((n) => n.endsWith(".env") && OS_USER.test(n.slice(0, -4)))
        .sort()
    : [];
  const texts = new Map<string, string>();
  const ports = portTable();
  const problems: string[] = [];
  const owners = new Map<number, string>();
  for (const name of names) {
    const user = name.slice(0, -4);
    const text = readFileSync(path.join(dir, name), "utf8");
    texts.set(user, text);
    const value = envValue(text, "T3_PORT");
    if (value === undefined) continue;
    const port = Number(value);
    if (!/^\d+$/.test(value) || port < 1024 || port > 65535)
      problems.push(`${envFile(user)}: T3_PORT=${value} is not a port (1024-65535)`);
    else if (port === DISPATCH_PORT) problems.push(`${envFile(user)}: T3_PORT=${port} is t3-dispatch's own port`);
    else if (owners.has(port))
      problems.push(`${envFile(user)}: T3_PORT=${port} is also ${owners.get(port)}'s (${envFile(owners.get(port)!)})`);
    else {
      owners.set(port, user);
      ports[user] = port;
    }
  }
  if (problems.length > 0) {
    throw new UserError(
      `the t3 ports in ${ENV_DIR} cannot all be kept:\n${problems.join("\n")}`,
      "give each user a port of their own in their .env (or delete the T3_PORT line: the next run assigns a free one)",
    );
  }
  return { texts, ports };
}

/**
 * A port once given stays with its user: the T3_PORT of their .env file. It
 * stays taken after the user leaves the roster too (the env file is kept),
 * so it is never handed to someone else. New users, in name order, get the
 * lowest free port from FIRST_PORT up, never DISPATCH_PORT.
 */
export function allocatePorts(existing: PortTable, users: string[]): PortTable {
  const ports = portTable(existing);
  const taken = new Set([...Object.values(ports), DISPATCH_PORT]);
  let next = FIRST_PORT;
  for (const user of [...users].sort()) {
    if (Object.hasOwn(ports, user)) continue;
    while (taken.has(next)) next++;
    ports[user] = next;
    taken.add(next);
  }
  return ports;
}

// ---- files ----------------------------------------------------------------

export const TTYD_MAP = "/etc/ttyd-user-map";
export const TTYD_ADMINS = "/etc/ttyd-admins";
export const DISPATCH_MAP = `${ENV_DIR}/dispatch.json`;

/** Who can sign in: roster users that are not parked (a parked user has no running instance), in port order. */
function signInUsers(roster: Roster, ports: PortTable): Array<[string, RosterUser]> {
  return Object.entries(roster)
    .filter(([, user]) => !user.parked)
    .sort(([a], [b]) => ports[a]! - ports[b]!);
}

/** `authentik_user=os_user` lines in port order, as t3-mint and t3-state-backup read them. */
export function ttydMapContent(roster: Roster, ports: PortTable): string {
  const lines = signInUsers(roster, ports).map(([osUser, user]) => `${user.authentik_user}=${osUser}\n`);
  return `# Generated by the devvm builder (stage users) from roster.yaml: do not edit.\n# authentik_user=os_user, in t3 port order; the next run overwrites this file.\n${lines.join("")}`;
}

/**
 * The admin-tier OS users, sorted, one a line, under a three-line header, as
 * the old reconcile wrote it for the web terminal. Parked admins too: parking
 * stops a user's daemons, it does not change their tier.
 */
export function ttydAdminsContent(roster: Roster): string {
  const admins = Object.entries(roster)
    .filter(([, user]) => user.tier === "admin")
    .map(([osUser]) => osUser)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `# Generated by the devvm builder (stage users) from roster.yaml: do not edit.\n# The OS users of the roster's admin tier, sorted, one a line.\n# The next run overwrites this file.\n${admins.map((a) => `${a}\n`).join("")}`;
}

/** t3-dispatch's map, one line: {"<authentik_user>":{"os_user":"<os_user>","port":<port>},...}, keys sorted. */
export function dispatchContent(roster: Roster, ports: PortTable): string {
  const entries = signInUsers(roster, ports)
    .map(([osUser, user]) => [user.authentik_user, { os_user: osUser, port: ports[osUser]! }] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${JSON.stringify(Object.fromEntries(entries))}\n`;
}

/** The files the stage writes: the maps, the env folder and each roster user's env file, with T3_PORT set in place. */
export function userFiles(roster: Roster, env: EnvFiles, ports: PortTable): Resource[] {
  const users = Object.keys(roster).sort();
  return [
    { kind: "dir", path: ENV_DIR, mode: 0o755 },
    { kind: "file", path: TTYD_MAP, mode: 0o644, content: ttydMapContent(roster, ports) },
    { kind: "file", path: TTYD_ADMINS, mode: 0o644, content: ttydAdminsContent(roster) },
    { kind: "file", path: DISPATCH_MAP, mode: 0o644, content: dispatchContent(roster, ports) },
    // Secret: other lines may hold a user's Claude token (never shown in a diff or hashed in the manifest).
    ...users.map((u): Resource => ({
      kind: "file",
      path: envFile(u),
      mode: 0o600,
      secret: true,
      content: setEnvValue(env.texts.get(u) ?? "", "T3_PORT", String(ports[u]!)),
    })),
  ];
}

// ---- commands (need a real machine, or a --root with its own /etc) ---------

const rootArgs = (ctx: BuildContext) => (underRoot(ctx) ? ["--root", ctx.root] : []);

export async function applyAccountStep(ctx: BuildContext, step: AccountStep): Promise<void> {
  switch (step.kind) {
    case "create-group":
      await run(ctx, "groupadd", [...rootArgs(ctx), "--system", step.group]);
      break;
    case "create-user": {
      const home = hostPath(ctx, `/home/${step.user}`);
      const existingHome = await lstatOrNull(home);
      // --user-group: the user's own primary group; skel fills a new home.
      // No --password: the account's password stays locked ("!"); people sign in through the sign-on.
      await run(ctx, "useradd", [
        ...rootArgs(ctx),
        "--create-home",
        "--shell",
        "/bin/zsh",
        "--user-group",
        "--groups",
        step.groups.join(","),
        step.user,
      ]);
      // useradd makes homes 0755 (Debian's HOME_MODE): on a shared box a home is its owner's alone.
      if (!existingHome) await chmod(home, 0o700);
      else if (existingHome.uid === 0) {
        // A home made before its account (by root, e.g. restored trees under
        // it) would leave the user, and their t3 serve, unable to write in it.
        // Only its top folder changes hands; nothing inside is touched.
        ctx.accounts.reload();
        await chown(home, ctx.accounts.uid(step.user), ctx.accounts.gid(step.user));
        ctx.log.info(`gave /home/${step.user}, which root owned, to ${step.user} (its contents keep their owners)`);
      }
      break;
    }
    case "add-groups":
      // -a: appended; without it usermod would drop every other group.
      await run(ctx, "usermod", [...rootArgs(ctx), "-a", "-G", step.groups.join(","), step.user]);
      break;
  }
}
