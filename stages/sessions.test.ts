// The sessions stage's launcher copies on a test root with its own accounts:
// alice (power-user), bob (namespace-owner), carol (parked) and wizard
// (admin), each owning a home. Needs root (chown), as CI and the builder run.
import { appendFileSync, chownSync, lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Inputs } from "../lib/inputs/index.ts";
import { RosterFileSchema } from "../lib/inputs/roster.ts";
import { isSkip, type Stage } from "../lib/core/stage.ts";
import { makeTestRootWithAccounts, type TestRoot } from "../test/support/test-context.ts";
import sessionsStage from "./sessions.ts";

const sessions: Stage = sessionsStage;
const asRoot = process.getuid?.() === 0;
const UIDS = { alice: 4301, bob: 4302, carol: 4303, wizard: 4304 } as const;
const OLD = "#!/bin/sh\n# an old launcher\nexec claude\n";
const roster = RosterFileSchema.parse({
  users: {
    wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
    alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
    bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "namespace-owner", namespaces: ["payments"] },
    carol: { authentik_user: "carol", k8s_user: "carol", tier: "power-user", parked: true },
  },
}).users;

function homesRoot(): TestRoot & { warnings: string[]; real: (p: string) => string } {
  const warnings: string[] = [];
  const root = makeTestRootWithAccounts({ warnings, inputs: { roster } as Inputs });
  const real = (p: string) => path.join(root.dir, p);
  for (const [user, uid] of Object.entries(UIDS)) {
    appendFileSync(real("etc/passwd"), `${user}:x:${uid}:${uid}::/home/${user}:/bin/zsh\n`);
    appendFileSync(real("etc/group"), `${user}:x:${uid}:\n`);
    mkdirSync(real(`home/${user}`), { recursive: true, mode: 0o700 });
    chownSync(real(`home/${user}`), uid, uid);
  }
  root.ctx.accounts.reload();
  return Object.assign(root, { warnings, real });
}

/** As the user would: a file of theirs, owned by them (a link too). */
function asUser(user: keyof typeof UIDS, file: string, make: (p: string) => void): void {
  make(file);
  spawnSync("chown", ["-h", `${UIDS[user]}:${UIDS[user]}`, file]);
}

const launcher = readFileSync(path.join(import.meta.dirname, "../files/skel/start-claude.sh"), "utf8");

describe.skipIf(!asRoot)("sessions: the current launcher in each non-admin's home", () => {
  it("replaces a non-admin's old launcher as theirs, keeps the admin's, and never writes through a planted link", async () => {
    using root = homesRoot();
    const { real } = root;
    asUser("alice", real("home/alice/start-claude.sh"), (p) => writeFileSync(p, OLD, { mode: 0o700 }));
    asUser("wizard", real("home/wizard/start-claude.sh"), (p) => writeFileSync(p, OLD, { mode: 0o755 }));
    asUser("carol", real("home/carol/start-claude.sh"), (p) => writeFileSync(p, OLD, { mode: 0o755 }));
    // bob points his launcher at a file only root may write.
    writeFileSync(real("etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o640 });
    asUser("bob", real("home/bob/start-claude.sh"), (p) => spawnSync("ln", ["-s", "/etc/shadow", p]));
    const shadow = readFileSync(real("etc/shadow"));

    const check = await sessions.check(root.ctx);
    if (isSkip(check)) throw new Error(check.skip);
    expect(check.changes).toEqual([
      expect.objectContaining({ kind: "content", path: "/home/alice/start-claude.sh" }),
      { kind: "mode", path: "/home/alice/start-claude.sh", from: "0700", to: "0755" },
    ]);
    expect(check.managed).toEqual([{ path: "/home/alice/start-claude.sh" }]);
    expect(root.warnings).toEqual([expect.stringMatching(/\/home\/bob\/start-claude\.sh is a link to \/etc\/shadow/)]);
    await sessions.apply(root.ctx, check);

    expect(readFileSync(real("home/alice/start-claude.sh"), "utf8")).toBe(launcher);
    const alice = lstatSync(real("home/alice/start-claude.sh"));
    expect([alice.uid, alice.gid, alice.mode & 0o7777]).toEqual([UIDS.alice, UIDS.alice, 0o755]);
    expect(readFileSync(real("home/wizard/start-claude.sh"), "utf8")).toBe(OLD);
    expect(readFileSync(real("home/carol/start-claude.sh"), "utf8")).toBe(OLD);
    expect(readlinkSync(real("home/bob/start-claude.sh"))).toBe("/etc/shadow");
    expect(readFileSync(real("etc/shadow"))).toEqual(shadow);

    const again = await sessions.check(root.ctx);
    expect(isSkip(again) ? again : again.changes).toEqual([]);
  });

  it("gives a launcher to a non-admin who has none, and nothing to one without a home", async () => {
    using root = homesRoot();
    spawnSync("rm", ["-r", root.real("home/bob")]);
    const check = await sessions.check(root.ctx);
    if (isSkip(check)) throw new Error(check.skip);
    expect(check.changes).toEqual([
      expect.objectContaining({ kind: "create", path: "/home/alice/start-claude.sh", what: "file" }),
    ]);
    await sessions.apply(root.ctx, check);
    expect(lstatSync(root.real("home/alice/start-claude.sh")).uid).toBe(UIDS.alice);
    expect(() => lstatSync(root.real("home/bob"))).toThrow(/ENOENT/);
  });
});
