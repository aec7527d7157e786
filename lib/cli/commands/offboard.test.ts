import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCli } from "../args.ts";
import type { Inputs } from "../../inputs/index.ts";
import { RosterFileSchema } from "../../inputs/roster.ts";
import { offboardStage } from "./offboard.ts";
import { makeTestRoot } from "../../../test/support/test-context.ts";

const roster = RosterFileSchema.parse({
  users: { alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" } },
}).users;

describe("build.ts offboard USER", () => {
  it("parses the user, and refuses a missing one", () => {
    expect(parseCli(["offboard", "carol", "--plan"])).toMatchObject({ command: "offboard", user: "carol", plan: true });
    expect(() => parseCli(["offboard"])).toThrow("offboard needs the user's name");
    expect(() => parseCli(["offboard", "a", "b"])).toThrow("unexpected arguments: b");
  });

  it("refuses a user still in the roster, and one no build has cut", () => {
    using root = makeTestRoot({ inputs: { roster } as Inputs });
    expect(() => offboardStage(root.ctx, "alice")).toThrow("alice is still in roster.yaml");
    expect(() => offboardStage(root.ctx, "carol")).toThrow("carol has not been cut by a build");
  });

  it("plans the archive before the deletion, for a cut user", async () => {
    using root = makeTestRoot({ inputs: { roster } as Inputs });
    mkdirSync(path.join(root.dir, "var/lib/devvm"), { recursive: true });
    writeFileSync(path.join(root.dir, "var/lib/devvm/roster-applied.json"), '{"users":["alice"],"cut":["carol"]}\n');
    mkdirSync(path.join(root.dir, "etc"));
    writeFileSync(
      path.join(root.dir, "etc/passwd"),
      "root:x:0:0::/root:/bin/bash\ncarol:x:1002:1002::/home/carol:/bin/zsh\n",
    );
    mkdirSync(path.join(root.dir, "home/carol"), { recursive: true });
    const stage = offboardStage(root.ctx, "carol", new Date("2026-11-26T10:20:30Z"));
    const check = await stage.check(root.ctx);
    expect("changes" in check && check.changes.map((c) => (c.kind === "action" ? c.description : ""))).toEqual([
      "archive /home/carol to /var/backups/devvm-offboarded/carol-20261126T102030Z.tar.gz (root, 0600)",
      "delete the account carol (userdel)",
      "remove /home/carol",
      "forget carol in the record of cut users",
    ]);
  });
});
