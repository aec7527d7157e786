// What roster.yaml asks of the machine's accounts, planned as data: the
// groups and accounts to create, the groups to add (never to remove), the
// sticky t3 ports, /etc/ttyd-user-map and the per-user env files. The
// commands that change accounts are the small functions at the end; the
// planning is pure, so it is tested without a machine.
import { existsSync, readFileSync } from "node:fs";
import { chown } from "node:fs/promises";
import path from "node:path";
import type { Change } from "./change.ts";
import type { BuildContext } from "./context.ts";
import { hostPath, underRoot } from "./context.ts";
import { UserError } from "./errors.ts";
import { run } from "./exec.ts";
import { lstatOrNull, type Resource } from "./files.ts";
import type { Roster, RosterUser } from "./inputs/roster.ts";
import { STATE_DIR } from "./layout.ts";

export const TIER_GROUPS: Record<RosterUser["tier"], string> = {
  admin: "devvm-admin",
  "power-user": "devvm-power-user",
  "namespace-owner": "devvm-namespace-owner",
};
export const ADMIN_GROUPS = ["sudo", "docker", "code-shared"] as const;
/** Groups that come with a package; the builder never creates them. */
const PACKAGE_GROUPS = new Set(["sudo"]);

export const PORTS_FILE = `${STATE_DIR}/ports.json`;
export const FIRST_PORT = 3780;
export const TTYD_MAP = "/etc/ttyd-user-map";
export const ENV_DIR = "/etc/t3-serve";
export const envFile = (user: string) => `${ENV_DIR}/${user}.env`;

/** The machine's accounts as /etc/passwd and /etc/group give them. */
export interface AccountTable {
  users: Map<string, { gid: number; home: string }>;
  groups: Map<string, { gid: number; members: string[] }>;
}

export function readAccountTable(ctx: Pick<BuildContext, "root">): AccountTable {
  const rows = (file: string) =>
    (existsSync(hostPath(ctx, file)) ? readFileSync(hostPath(ctx, file), "utf8") : "")
      .split("\n")
      .filter((line) => line.trim() && !line.startsWith("#"))
      .map((line) => line.split(":"));
  const users = new Map(rows("/etc/passwd").map(([name, , , gid, , home]) => [name!, { gid: Number(gid), home: home ?? "" }]));
  const groups = new Map(rows("/etc/group").map(([name, , gid, members]) => [name!, { gid: Number(gid), members: (members ?? "").split(",").filter(Boolean) }]));
  return { users, groups };
}

/** Groups a user is in: the primary one and every group listing the user. */
export function groupsOf(table: AccountTable, user: string): Set<string> {
  const primary = table.users.get(user)?.gid;
  return new Set([...table.groups].filter(([, g]) => g.gid === primary || g.members.includes(user)).map(([name]) => name));
}

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
    throw new UserError(`group ${missingFromPackages.join(", ")} is missing on the machine; admins need it`, "install the sudo package (add sudo to packages.txt)");
  }
  const steps: AccountStep[] = needed.filter((g) => !table.groups.has(g)).map((group) => ({ kind: "create-group", group }));
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

export function readPorts(ctx: Pick<BuildContext, "root">): PortTable {
  const file = hostPath(ctx, PORTS_FILE);
  if (!existsSync(file)) return {};
  const parsed = JSON.parse(readFileSync(file, "utf8")) as unknown;
  if (typeof parsed !== "object" || parsed === null || Object.values(parsed).some((p) => !Number.isInteger(p))) {
    throw new UserError(`${PORTS_FILE} is not a map of user names to ports`, "repair it by hand: it keeps each user's t3 port");
  }
  return parsed as PortTable;
}

/**
 * A port once given stays with its user. It stays recorded after the user
 * leaves the roster too (the account and its instance are kept, additive
 * only), so it is never handed to someone else. New users, in name order,
 * get the lowest free port from FIRST_PORT up.
 */
export function allocatePorts(recorded: PortTable, users: string[]): PortTable {
  const ports: PortTable = { ...recorded };
  const taken = new Set(Object.values(ports));
  let next = FIRST_PORT;
  for (const user of [...users].sort()) {
    if (ports[user] !== undefined) continue;
    while (taken.has(next)) next++;
    ports[user] = next;
    taken.add(next);
  }
  return Object.fromEntries(Object.entries(ports).sort(([a], [b]) => a.localeCompare(b)));
}

export const portsContent = (ports: PortTable) => `${JSON.stringify(ports, null, 2)}\n`;

// ---- files ----------------------------------------------------------------

/** `authentik_user=os_user` lines, sorted, as t3-mint and t3-state-backup read them. */
export function ttydMapContent(roster: Roster): string {
  const lines = Object.entries(roster)
    .map(([osUser, user]) => `${user.authentik_user}=${osUser}`)
    .sort();
  return `# Written by the devvm builder (stage users) from roster.yaml; edits are overwritten.\n${lines.join("\n")}\n`;
}

export const envContent = (port: number) => `T3_PORT=${port}\n`;

/** The files the stage manages (map, env folder and files) plus the unmanaged port record. */
export function userFiles(roster: Roster, ports: PortTable): { managed: Resource[]; ports: Resource } {
  const users = Object.keys(roster).sort();
  return {
    managed: [
      { kind: "file", path: TTYD_MAP, mode: 0o644, content: ttydMapContent(roster) },
      { kind: "dir", path: ENV_DIR, mode: 0o755 },
      ...users.map((u): Resource => ({ kind: "file", path: envFile(u), mode: 0o644, content: envContent(ports[u]!) })),
    ],
    ports: { kind: "file", path: PORTS_FILE, mode: 0o644, content: portsContent(ports) },
  };
}

// ---- code layout ----------------------------------------------------------

/** A user's home; one that useradd is about to create gets its default, /home/USER (a restored home may already be there). */
export const homeOf = (table: AccountTable, user: string) => table.users.get(user)?.home ?? `/home/${user}`;

/** A `single` ~/code (one git clone) that the roster now wants as a workspace: moved to ~/code/infra. */
export function layoutMigrations(ctx: Pick<BuildContext, "root">, roster: Roster, table: AccountTable): Array<{ user: string; code: string }> {
  return Object.entries(roster)
    .filter(([, user]) => user.code_layout === "workspace")
    .map(([name]) => ({ user: name, code: path.join(homeOf(table, name), "code") }))
    .filter(({ code }) => existsSync(hostPath(ctx, `${code}/.git`)) && !existsSync(hostPath(ctx, `${code}/infra`)))
    .sort((a, b) => a.user.localeCompare(b.user));
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
      const rootOwnedHome = (await lstatOrNull(home))?.uid === 0;
      // --user-group: the user's own primary group; skel fills the new home.
      await run(ctx, "useradd", [...rootArgs(ctx), "--create-home", "--shell", "/bin/bash", "--user-group", "--groups", step.groups.join(","), step.user]);
      if (rootOwnedHome) {
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
