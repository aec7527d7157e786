// User and group names <-> ids, read from the managed machine's own
// /etc/passwd and /etc/group (under --root when there is one there), so that
// an image root is owned by its own accounts, not the host's.
import { readFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "../core/errors.ts";

interface Table {
  byName: Map<string, number>;
  byId: Map<number, string>;
}

function readTable(file: string): Table {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    // A bare --root folder has no accounts of its own yet.
  }
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    if (!name || id === undefined || !/^\d+$/.test(id)) continue;
    byName.set(name, Number(id));
    if (!byId.has(Number(id))) byId.set(Number(id), name);
  }
  return { byName, byId };
}

export class Accounts {
  private cache = new Map<string, Table>();
  constructor(private readonly root: string) {}

  private table(kind: "passwd" | "group"): Table {
    let table = this.cache.get(kind);
    if (!table) {
      const own = readTable(path.join(this.root, "etc", kind));
      // Under a bare --root, fall back to the host's accounts.
      table = own.byName.size > 0 || this.root === "/" ? own : readTable(path.join("/etc", kind));
      this.cache.set(kind, table);
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

  private lookup(kind: "passwd" | "group", name: string): number {
    if (name === "root") return 0;
    const id = this.table(kind).byName.get(name);
    if (id === undefined) {
      throw new UserError(
        `no ${kind === "passwd" ? "user" : "group"} named ${name} on the machine`,
        "the stage that creates it must run first (see `build.ts --list`)",
      );
    }
    return id;
  }
}
