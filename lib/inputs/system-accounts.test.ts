import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DISPATCH_ACCOUNT } from "../../stages/service-helpers.ts";
import { CODEX_GROUP } from "../../stages/vault-tokens.ts";
import { ADMIN_GROUPS, TIER_GROUPS } from "../users/roster-accounts.ts";
import { RESERVED_NAMES } from "./system-accounts.ts";
import { loadInputs } from "./index.ts";
import { inputFolders, rosterOf } from "../../test/support/input-folders.ts";

const { scratch, inputsWith, problemsOf } = inputFolders();

describe("names the roster may not give a person", () => {
  it("include every account and group the builder makes or gives", () => {
    for (const name of [DISPATCH_ACCOUNT, CODEX_GROUP, ...ADMIN_GROUPS, ...Object.values(TIER_GROUPS)])
      expect(RESERVED_NAMES).toContain(name);
  });

  it("include root and nobody", () => {
    expect(RESERVED_NAMES).toContain("root");
    expect(RESERVED_NAMES).toContain("nobody");
  });
});

describe("the target root's accounts", () => {
  it("refuses the target root's system accounts and groups, and adopts its people", async () => {
    const root = path.join(scratch, "root");
    mkdirSync(path.join(root, "etc"), { recursive: true });
    writeFileSync(
      path.join(root, "etc/passwd"),
      "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/zsh\nghost:x:65000:65000::/:/bin/false\n",
    );
    writeFileSync(path.join(root, "etc/group"), "root:x:0:\nssl-cert:x:110:postgres\nalice:x:1001:\n");
    const problems = await problemsOf({ "roster.yaml": rosterOf("alice", "postgres", "ssl-cert", "ghost") }, { root });
    expect(problems).toEqual([
      {
        file: "roster.yaml",
        line: 6,
        message: `users.postgres: postgres is a system account on this machine (uid 105 in ${root}/etc/passwd), not a person's (uid 1000 to 59999): choose another OS user name`,
      },
      {
        file: "roster.yaml",
        line: 10,
        message: `users.ssl-cert: ssl-cert is a system group on this machine (gid 110 in ${root}/etc/group); an account of that name could not have its own group: choose another OS user name`,
      },
      {
        file: "roster.yaml",
        line: 14,
        message: expect.stringContaining("users.ghost: ghost is a system account on this machine (uid 65000"),
      },
    ]);
    await expect(loadInputs(inputsWith({ "roster.yaml": rosterOf("alice", "bob") }), { root })).resolves.toBeDefined();
  });
});
