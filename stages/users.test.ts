import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { BuildContext } from "../lib/context.ts";
import type { Inputs } from "../lib/inputs/index.ts";
import { RosterSchema, type Roster } from "../lib/inputs/roster.ts";
import { allocatePorts, planAccounts, readAccountTable, ttydMapContent, type AccountTable } from "../lib/roster-accounts.ts";
import type { Stage } from "../lib/stage.ts";
import { makeTestRoot } from "../lib/test-context.ts";
import usersStage from "./users.ts";

const users: Stage = usersStage;
const hasSystemctl = spawnSync("systemctl", ["--version"]).status === 0;

const ROSTER: Roster = RosterSchema.parse({
  wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin", code_layout: "workspace", repos: ["devvm"] },
  alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
  bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "namespace-owner", namespaces: ["payments"], parked: true },
});

const GROUPS = ["sudo:x:27:", "docker:x:990:", "code-shared:x:991:", "devvm-admin:x:992:", "devvm-power-user:x:993:", "devvm-namespace-owner:x:994:"];

function table(passwd: string[], group: string[]): AccountTable {
  using root = makeTestRoot();
  writeAccounts(root.dir, passwd, group);
  return readAccountTable(root.ctx);
}

function writeAccounts(dir: string, passwd: string[], group: string[]): void {
  mkdirSync(path.join(dir, "etc"), { recursive: true });
  writeFileSync(path.join(dir, "etc/passwd"), ["root:x:0:0:root:/root:/bin/bash", ...passwd, ""].join("\n"));
  writeFileSync(path.join(dir, "etc/group"), ["root:x:0:", ...group, ""].join("\n"));
}

/** A root where every roster account and group exists already (useradd needs a real machine). */
function builtRoot(roster: Roster = ROSTER) {
  const root = makeTestRoot();
  const names = Object.keys(roster);
  writeAccounts(
    root.dir,
    names.map((n, i) => `${n}:x:${1001 + i}:${1001 + i}::/home/${n}:/bin/bash`),
    [
      ...names.map((n, i) => `${n}:x:${1001 + i}:`),
      "sudo:x:27:wizard",
      "docker:x:990:wizard",
      "code-shared:x:991:wizard",
      "devvm-admin:x:992:wizard",
      `devvm-power-user:x:993:${names.filter((n) => roster[n]!.tier === "power-user").join(",")}`,
      "devvm-namespace-owner:x:994:bob",
    ],
  );
  const lines: string[] = [];
  Object.assign(root.ctx, { inputs: { roster } as Inputs, log: { info: (m: string) => lines.push(m), debug: () => {} } } satisfies Partial<BuildContext>);
  return Object.assign(root, { lines });
}

async function run(ctx: BuildContext) {
  const check = await users.check(ctx);
  if ("skip" in check) throw new Error(check.skip);
  return { check, applied: await users.apply(ctx, check) };
}

const descriptions = (changes: { kind: string; description?: string }[]) => changes.filter((c) => c.kind === "action").map((c) => c.description);

describe("sticky ports", () => {
  it("gives new users the lowest free ports from 3780, in name order", () => {
    expect(allocatePorts({}, ["wizard", "alice", "bob"])).toEqual({ alice: 3780, bob: 3781, wizard: 3782 });
  });

  it("never moves a recorded port, keeps a departed user's and fills gaps from the bottom", () => {
    const recorded = { wizard: 3782, gone: 3780 };
    expect(allocatePorts(recorded, ["wizard", "carol", "alice"])).toEqual({ alice: 3781, carol: 3783, gone: 3780, wizard: 3782 });
    expect(allocatePorts({ alice: 3781, carol: 3783, gone: 3780, wizard: 3782 }, ["wizard", "carol", "alice"])).toEqual({ alice: 3781, carol: 3783, gone: 3780, wizard: 3782 });
  });
});

describe("the ttyd user map", () => {
  it("has sorted authentik_user=os_user lines that t3-mint's parser reads", () => {
    const content = ttydMapContent(ROSTER);
    expect(content.split("\n").filter((l) => !l.startsWith("#"))).toEqual(["alice.moreau=alice", "bkowalski=bob", "merlin=wizard", ""]);
    // The exact awk test of files/service/t3-mint.
    using root = makeTestRoot();
    writeFileSync(path.join(root.dir, "map"), content);
    for (const [user, mapped] of [["alice", 0], ["wizard", 0], ["merlin", 1]] as const) {
      const awk = spawnSync("awk", ["-F=", "-v", `u=${user}`, "!/^[[:space:]]*#/ && NF == 2 && $2 == u { found = 1 } END { exit !found }", path.join(root.dir, "map")]);
      expect(awk.status, user).toBe(mapped);
    }
  });
});

describe("the account plan", () => {
  it("creates the missing groups and accounts with their tier's groups", () => {
    const steps = planAccounts(ROSTER, table([], ["sudo:x:27:"]));
    expect(steps).toEqual([
      { kind: "create-group", group: "code-shared" },
      { kind: "create-group", group: "devvm-admin" },
      { kind: "create-group", group: "devvm-namespace-owner" },
      { kind: "create-group", group: "devvm-power-user" },
      { kind: "create-group", group: "docker" },
      { kind: "create-user", user: "alice", groups: ["devvm-power-user"] },
      { kind: "create-user", user: "bob", groups: ["devvm-namespace-owner"] },
      { kind: "create-user", user: "wizard", groups: ["devvm-admin", "sudo", "docker", "code-shared"] },
    ]);
  });

  it("only adds the missing groups of an existing user and keeps the others", () => {
    const accounts = table(["wizard:x:1000:1000::/home/wizard:/bin/bash", "alice:x:1001:1001::/home/alice:/bin/bash", "bob:x:1002:1002::/home/bob:/bin/bash"], [
      "wizard:x:1000:",
      "alice:x:1001:",
      "bob:x:1002:",
      "sudo:x:27:wizard",
      "docker:x:990:",
      "code-shared:x:991:wizard",
      "devvm-admin:x:992:wizard",
      "devvm-power-user:x:993:alice",
      "devvm-namespace-owner:x:994:bob",
      "audio:x:29:alice",
    ]);
    // alice's extra group (audio) appears in no step: nothing is ever removed.
    expect(planAccounts(ROSTER, accounts)).toEqual([{ kind: "add-groups", user: "wizard", groups: ["docker"] }]);
  });

  it("refuses when the sudo group (from the sudo package) is missing", () => {
    expect(() => planAccounts(ROSTER, table([], GROUPS.slice(1)))).toThrow(/group sudo is missing/);
  });
});

describe("users under --root", () => {
  it("writes the map, the env files and the port record, and a second run changes nothing", async () => {
    using root = builtRoot();
    const { applied } = await run(root.ctx);
    expect(applied.filter((c) => c.kind === "create").map((c) => ("path" in c ? c.path : ""))).toEqual(["/etc/ttyd-user-map", "/etc/t3-serve", "/etc/t3-serve/alice.env", "/etc/t3-serve/bob.env", "/etc/t3-serve/wizard.env", "/var", "/var/lib", "/var/lib/devvm", "/var/lib/devvm/ports.json"]);
    expect(readFileSync(path.join(root.dir, "etc/t3-serve/alice.env"), "utf8")).toBe("T3_PORT=3780\n");
    expect(readFileSync(path.join(root.dir, "etc/t3-serve/wizard.env"), "utf8")).toBe("T3_PORT=3782\n");
    expect(statSync(path.join(root.dir, "etc/t3-serve/alice.env")).mode & 0o7777).toBe(0o644);
    expect(statSync(path.join(root.dir, "etc/t3-serve")).mode & 0o7777).toBe(0o755);
    expect(statSync(path.join(root.dir, "etc/ttyd-user-map")).mode & 0o7777).toBe(0o644);
    expect(JSON.parse(readFileSync(path.join(root.dir, "var/lib/devvm/ports.json"), "utf8"))).toEqual({ alice: 3780, bob: 3781, wizard: 3782 });
    expect(root.lines).toContain("t3-serve@ instances left alone: /etc/systemd/system/t3-serve@.service is not installed yet (stage units)");
    expect(await users.check(root.ctx)).toEqual({ changes: [], managed: expect.arrayContaining([{ path: "/etc/ttyd-user-map" }, { path: "/etc/t3-serve/bob.env" }]) });
  });

  it("keeps every port when a user joins and the roster is reordered", async () => {
    using root = builtRoot();
    await run(root.ctx);
    const grown = RosterSchema.parse({ carol: { authentik_user: "carol.c", k8s_user: "cc", tier: "power-user" }, ...ROSTER });
    using again = builtRoot(grown);
    Object.assign(root.ctx, { inputs: { roster: grown } as Inputs });
    writeFileSync(path.join(root.dir, "etc/passwd"), readFileSync(path.join(again.dir, "etc/passwd")));
    writeFileSync(path.join(root.dir, "etc/group"), readFileSync(path.join(again.dir, "etc/group")));
    await run(root.ctx);
    expect(JSON.parse(readFileSync(path.join(root.dir, "var/lib/devvm/ports.json"), "utf8"))).toEqual({ alice: 3780, bob: 3781, carol: 3783, wizard: 3782 });
    expect(readFileSync(path.join(root.dir, "etc/t3-serve/carol.env"), "utf8")).toBe("T3_PORT=3783\n");
    expect(readFileSync(path.join(root.dir, "etc/ttyd-user-map"), "utf8")).toContain("carol.c=carol\n");
  });

  it("moves a single clone to ~/code/infra for a workspace user, and says which clones it cannot make", async () => {
    using root = builtRoot();
    const code = path.join(root.dir, "home/wizard/code");
    mkdirSync(path.join(code, ".git"), { recursive: true, mode: 0o750 });
    writeFileSync(path.join(code, "README"), "infra\n");
    const { applied } = await run(root.ctx);
    expect(descriptions(applied)).toContain("move /home/wizard/code to /home/wizard/code/infra (code_layout workspace)");
    expect(readFileSync(path.join(code, "infra/README"), "utf8")).toBe("infra\n");
    expect(existsSync(path.join(code, "infra/.git"))).toBe(true);
    expect(statSync(code).mode & 0o7777).toBe(0o750);
    expect(root.lines).toContain("not cloning /home/wizard/code/devvm for wizard: the builder has no org git server to clone from");
    expect(root.lines).toContain("not cloning /home/alice/code for alice: the builder has no org git server to clone from");
    expect(root.lines.filter((l) => l.includes("/home/wizard/code/infra"))).toEqual([]);
    expect(await users.check(root.ctx)).toMatchObject({ changes: [] });
  });

  it.skipIf(!hasSystemctl)("enables the instances of active users offline, disables a parked one, starts nothing", async () => {
    using root = builtRoot();
    const unitDir = path.join(root.dir, "etc/systemd/system");
    mkdirSync(path.join(unitDir, "multi-user.target.wants"), { recursive: true });
    copyFileSync(path.join(root.ctx.repoDir, "files/service/units/t3-serve@.service"), path.join(unitDir, "t3-serve@.service"));
    // bob was enabled before he was parked.
    spawnSync("ln", ["-s", "/etc/systemd/system/t3-serve@.service", path.join(unitDir, "multi-user.target.wants/t3-serve@bob.service")]);
    const { applied } = await run(root.ctx);
    expect(descriptions(applied)).toEqual(["enable t3-serve@alice.service", "enable t3-serve@wizard.service", "disable t3-serve@bob.service (parked)"]);
    expect(readlinkSync(path.join(unitDir, "multi-user.target.wants/t3-serve@alice.service"))).toBe("/etc/systemd/system/t3-serve@.service");
    expect(existsSync(path.join(unitDir, "multi-user.target.wants/t3-serve@bob.service"))).toBe(false);
    expect(root.lines).toContain(`t3-serve@ instances not started: the build manages ${root.dir} (--root), not a running system`);
    expect(await users.check(root.ctx)).toMatchObject({ changes: [] });
  });
});
