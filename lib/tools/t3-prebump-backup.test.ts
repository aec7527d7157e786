import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestRoot, type TestRoot } from "../../test/support/test-context.ts";
import { prebumpBackups, usersWithT3State } from "./t3-prebump-backup.ts";

function withAccounts(root: TestRoot, lines: string[]): void {
  mkdirSync(path.join(root.dir, "etc"), { recursive: true });
  writeFileSync(path.join(root.dir, "etc/passwd"), `${lines.join("\n")}\n`);
}

function withDatabase(root: TestRoot, home: string): void {
  mkdirSync(path.join(root.dir, home, ".t3/userdata"), { recursive: true });
  writeFileSync(path.join(root.dir, home, ".t3/userdata/state.sqlite"), "SQLite format 3\0");
}

describe("usersWithT3State", () => {
  it("finds every account whose home holds ~/.t3/userdata/state.sqlite, mapped or not, sorted", () => {
    using root = makeTestRoot();
    withAccounts(root, [
      "root:x:0:0:root:/root:/bin/bash",
      "t3-dispatch:x:998:998::/nonexistent:/usr/sbin/nologin",
      "zoe:x:1004:1004::/home/zoe:/bin/zsh",
      "alice:x:1001:1001::/home/alice:/bin/zsh",
      "carol:x:1003:1003::/home/carol:/bin/zsh",
      "dave:x:1005:1005::/srv/dave:/bin/zsh",
    ]);
    for (const home of ["/home/zoe", "/home/alice", "/srv/dave"]) withDatabase(root, home);
    // carol's t3 has run, but a folder is not a database.
    mkdirSync(path.join(root.dir, "home/carol/.t3/userdata/state.sqlite"), { recursive: true });
    expect(usersWithT3State(root.ctx)).toEqual(["alice", "dave", "zoe"]);
  });
});

describe("prebumpBackups", () => {
  it("names one copy per user for a version change, none for a first install or the same version", () => {
    using root = makeTestRoot();
    withAccounts(root, ["alice:x:1001:1001::/home/alice:/bin/zsh"]);
    withDatabase(root, "/home/alice");
    expect(prebumpBackups(root.ctx, "0.0.26", "0.0.28")).toEqual([
      { user: "alice", path: "/var/backups/t3-state/alice/state-prebump-0.0.26-0.0.28.sqlite" },
    ]);
    expect(prebumpBackups(root.ctx, null, "0.0.26")).toEqual([]);
    expect(prebumpBackups(root.ctx, "0.0.26", "0.0.26")).toEqual([]);
  });
});
