import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestRoot, type TestRoot } from "../../test/support/test-context.ts";
import { Accounts, groupsOf, parseGroup, parsePasswd, readAccountTable, readIds } from "./accounts.ts";

function withAccounts(root: TestRoot, passwd: string[], group: string[]): void {
  mkdirSync(path.join(root.dir, "etc"), { recursive: true });
  writeFileSync(path.join(root.dir, "etc/passwd"), `${passwd.join("\n")}\n`);
  writeFileSync(path.join(root.dir, "etc/group"), `${group.join("\n")}\n`);
}

describe("parsePasswd and parseGroup", () => {
  it("give each account's fields in file order", () => {
    expect(parsePasswd("root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1002::/home/alice:/bin/zsh\n")).toEqual([
      { name: "root", uid: 0, gid: 0, home: "/root" },
      { name: "alice", uid: 1001, gid: 1002, home: "/home/alice" },
    ]);
    expect(parseGroup("root:x:0:\nsudo:x:27:alice,bob\n")).toEqual([
      { name: "root", gid: 0, members: [] },
      { name: "sudo", gid: 27, members: ["alice", "bob"] },
    ]);
  });

  it("pass over blank lines, comments and lines without a name or a numeric id", () => {
    const text =
      "\n   \n# a comment:x:5:5\n:x:7:7::/:/bin/sh\nbroken:x:abc:1::/:/bin/sh\nshort\nbob:x:1003:1003::/home/bob:/bin/zsh\n";
    expect(parsePasswd(text).map((u) => u.name)).toEqual(["bob"]);
    expect(parseGroup("# x:x:1:\nodd:x::\ndocker:x:990:\n").map((g) => g.name)).toEqual(["docker"]);
  });
});

describe("readAccountTable", () => {
  it("is empty for a root without account files", () => {
    using root = makeTestRoot();
    expect(readAccountTable(root.ctx)).toEqual({ users: new Map(), groups: new Map() });
    expect(readIds(root.dir, "passwd")).toEqual([]);
  });

  it("keys accounts by name and finds a user's groups, primary and listed", () => {
    using root = makeTestRoot();
    withAccounts(
      root,
      ["root:x:0:0:root:/root:/bin/bash", "alice:x:1001:1001::/home/alice:/bin/zsh"],
      ["root:x:0:", "alice:x:1001:", "docker:x:990:bob,alice", "sudo:x:27:bob"],
    );
    const table = readAccountTable(root.ctx);
    expect(table.users.get("alice")).toEqual({ name: "alice", uid: 1001, gid: 1001, home: "/home/alice" });
    expect(table.groups.get("docker")?.members).toEqual(["bob", "alice"]);
    expect(groupsOf(table, "alice")).toEqual(new Set(["alice", "docker"]));
  });
});

describe("Accounts", () => {
  it("maps names to ids and an id to its first name", () => {
    using root = makeTestRoot();
    withAccounts(
      root,
      ["root:x:0:0:root:/root:/bin/bash", "alice:x:1001:1001::/home/alice:/bin/zsh", "alias:x:1001:1001::/:/bin/sh"],
      ["root:x:0:", "alice:x:1001:"],
    );
    const accounts = new Accounts(root.dir);
    expect(accounts.uid("alias")).toBe(1001);
    expect(accounts.userName(1001)).toBe("alice");
    expect(accounts.groupName(1001)).toBe("alice");
    expect(accounts.userName(4242)).toBe("4242");
    expect(() => accounts.gid("nobody-here")).toThrow(/no group named nobody-here on the machine/);
  });

  it("falls back to the host's accounts under a bare --root, and reads again after reload", () => {
    using root = makeTestRoot();
    const accounts = new Accounts(root.dir);
    expect(accounts.userName(0)).toBe("root");
    withAccounts(root, ["root:x:0:0:root:/root:/bin/bash", "carol:x:1005:1005::/home/carol:/bin/zsh"], ["root:x:0:"]);
    expect(accounts.hasUser("carol")).toBe(false);
    accounts.reload();
    expect(accounts.uid("carol")).toBe(1005);
  });
});
