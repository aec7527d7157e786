// The managed machine's accounts, read from its own /etc/passwd and
// /etc/group (under --root when there is one there), so that an image root
// is owned by its own accounts, not the host's. This is the one reader of
// those files: the rows (readPasswd, readGroup), the table the per-user
// stages plan from (readAccountTable), and names <-> ids (Accounts).
import { readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";

/** A line of /etc/passwd (passwd(5)). */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** A line of /etc/group (group(5)). */
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export type AccountFile = "passwd" | "group";

/** The real path of /etc/passwd or /etc/group under root. */
export function accountFilePath(root: string, file: AccountFile): string {
  return path.join(root, "etc", file);
}

/** The colon-separated fields of each line that is not blank or a comment. */
function fieldsOf(text: string): string[][] {
  return text
    .split("\n")
    .filter((line) => line.trim() && !line.startsWith("#"))
    .map((line) => line.split(":"));
}

const isId = (field: string | undefined): field is string => field !== undefined && /^\d+$/.test(field);

/** passwd(5) lines in file order; a line without a name or a numeric uid is passed over. */
export function parsePasswd(text: string): PasswdEntry[] {
  return fieldsOf(text).flatMap(([name, , uid, gid, , home]) =>
    name && isId(uid) ? [{ name, uid: Number(uid), gid: Number(gid), home: home ?? "" }] : [],
  );
}

/** group(5) lines in file order; a line without a name or a numeric gid is passed over. */
export function parseGroup(text: string): GroupEntry[] {
  return fieldsOf(text).flatMap(([name, , gid, members]) =>
    name && isId(gid) ? [{ name, gid: Number(gid), members: (members ?? "").split(",").filter(Boolean) }] : [],
  );
}

/** A file's text; a missing one (a bare --root folder has no accounts of its own yet) is empty. */
function readAccountFile(root: string, file: AccountFile): string {
  try {
    return readFileSync(accountFilePath(root, file), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
}

export const readPasswd = (root: string): PasswdEntry[] => parsePasswd(readAccountFile(root, "passwd"));
export const readGroup = (root: string): GroupEntry[] => parseGroup(readAccountFile(root, "group"));

/** Each name in passwd or group with its id (the uid or the gid), in file order. */
export function readIds(root: string, file: AccountFile): Array<{ name: string; id: number }> {
  return file === "passwd"
    ? readPasswd(root).map((user) => ({ name: user.name, id: user.uid }))
    : readGroup(root).map((group) => ({ name: group.name, id: group.gid }));
}

/** The machine's accounts by name, as they are now (read afresh on each call); a later line of a name wins. */
export interface AccountTable {
  users: Map<string, PasswdEntry>;
  groups: Map<string, GroupEntry>;
}

export function readAccountTable(ctx: Pick<BuildContext, "root">): AccountTable {
  return {
    users: new Map(readPasswd(ctx.root).map((user) => [user.name, user])),
    groups: new Map(readGroup(ctx.root).map((group) => [group.name, group])),
  };
}

/** Groups a user is in: the primary one and every group listing the user. */
export function groupsOf(table: AccountTable, user: string): Set<string> {
  const primary = table.users.get(user)?.gid;
  return new Set(
    [...table.groups].filter(([, g]) => g.gid === primary || g.members.includes(user)).map(([name]) => name),
  );
}

interface Names {
  byName: Map<string, number>;
  byId: Map<number, string>;
}

function namesIn(root: string, file: AccountFile): Names {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  let entries: Array<{ name: string; id: number }> = [];
  try {
    entries = readIds(root, file);
  } catch {
    // Unreadable: no names known there (ids are shown as numbers).
  }
  for (const { name, id } of entries) {
    byName.set(name, id);
    // The first name of an id is the one ls shows.
    if (!byId.has(id)) byId.set(id, name);
  }
  return { byName, byId };
}

/** Names <-> ids, read once and kept until reload(). */
export class Accounts {
  private cache = new Map<AccountFile, Names>();
  constructor(private readonly root: string) {}

  private table(file: AccountFile): Names {
    let table = this.cache.get(file);
    if (!table) {
      const own = namesIn(this.root, file);
      // Under a bare --root, fall back to the host's accounts.
      table = own.byName.size > 0 || this.root === "/" ? own : namesIn("/", file);
      this.cache.set(file, table);
    }
    return table;
  }

  uid(name: string): number {
    return this.lookup("passwd", name);
  }

  gid(name: string): number {
    return this.lookup("group", name);
  }

  userName(uid: number): string {
    return this.table("passwd").byId.get(uid) ?? String(uid);
  }

  groupName(gid: number): string {
    return this.table("group").byId.get(gid) ?? String(gid);
  }

  hasUser(name: string): boolean {
    return name === "root" || this.table("passwd").byName.has(name);
  }

  hasGroup(name: string): boolean {
    return name === "root" || this.table("group").byName.has(name);
  }

  /** Forget what was read: a stage that adds accounts calls this. */
  reload(): void {
    this.cache.clear();
  }

  private lookup(file: AccountFile, name: string): number {
    if (name === "root") return 0;
    const id = this.table(file).byName.get(name);
    if (id === undefined) {
      throw new UserError(
        `no ${file === "passwd" ? "user" : "group"} named ${name} on the machine`,
        "the stage that creates it must run first (see `build.ts --list`)",
      );
    }
    return id;
  }
}
