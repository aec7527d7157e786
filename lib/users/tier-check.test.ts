import { chownSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { startVaultStandIn } from "../../test/support/stand-ins/vault.ts";
import { RosterFileSchema } from "../inputs/roster.ts";
import { readSettings } from "../inputs/settings.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";
import { checkTiers, compareTiers } from "./tier-check.ts";

const ROSTER = RosterFileSchema.parse({
  users: {
    wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
    alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
    bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "namespace-owner", namespaces: ["payments"] },
  },
}).users;
const TOKEN = "hvs.tier-check-stand-in";

describe("tiers against the cluster", () => {
  it("exempts admins, finds absent users and different roles", () => {
    expect(compareTiers(ROSTER, { amoreau: { role: "power-user" }, "bob-k": { role: "power-user" } })).toEqual({
      absent: [],
      mismatched: [{ user: "bob", k8sUser: "bob-k", tier: "namespace-owner", role: "power-user" }],
    });
    // Names are never derived: bob's OS name means nothing to the cluster, and a JS object's own keys are not grants.
    expect(compareTiers(ROSTER, { bob: { role: "namespace-owner" }, constructor: { role: "admin" } })).toEqual({
      absent: [
        { user: "alice", k8sUser: "amoreau" },
        { user: "bob", k8sUser: "bob-k" },
      ],
      mismatched: [],
    });
  });

  it("reads k8s_users from Vault's secret/platform: a different tier throws naming both, an absent user warns", async () => {
    await using vault = await startVaultStandIn(TOKEN, {
      "secret/platform": { k8s_users: JSON.stringify({ amoreau: { role: "namespace-owner" } }) },
    });
    using root = makeTestRoot({ settings: readSettings({ VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN }) });
    const lines: string[] = [];
    const ctx = { ...root.ctx, log: { info: (m: string) => lines.push(m), debug: () => {} } };
    await expect(checkTiers(ctx, ROSTER)).rejects.toThrow(
      "alice (k8s user amoreau): roster.yaml says tier power-user, the cluster says namespace-owner",
    );
    expect(lines).toEqual([
      "warning: bob (k8s user bob-k) is not in Vault's secret/platform field k8s_users yet: their cluster grant is pending",
    ]);

    // Stored as a JSON object rather than a string, as Vault's UI may: read the same way.
    vault.setSecret("secret/platform", {
      k8s_users: { amoreau: { role: "power-user" }, "bob-k": { role: "namespace-owner" } },
    });
    lines.length = 0;
    await checkTiers(ctx, ROSTER);
    expect(lines).toEqual([]);
  });

  it("warns when Vault is out of reach or has no token, and fails with --strict", async () => {
    using root = makeTestRoot({ settings: readSettings({ VAULT_ADDR: "http://127.0.0.1:9", VAULT_TOKEN: TOKEN }) });
    const lines: string[] = [];
    await checkTiers({ ...root.ctx, log: { info: (m: string) => lines.push(m), debug: () => {} } }, ROSTER);
    expect(lines).toEqual([
      expect.stringMatching(
        /^warning: tiers not checked against the cluster: Vault at http:\/\/127.0.0.1:9 is unreachable/,
      ),
    ]);
    await expect(checkTiers({ ...root.ctx, strict: true }, ROSTER)).rejects.toThrow(/cannot check the roster's tiers/);
    using noToken = makeTestRoot();
    lines.length = 0;
    await checkTiers({ ...noToken.ctx, log: { info: (m: string) => lines.push(m), debug: () => {} } }, ROSTER);
    expect(lines).toEqual([
      "warning: tiers not checked against the cluster: no Vault token (VAULT_TOKEN unset, no /home/wizard/.vault-token)",
    ]);
  });

  it("never sends a token file that is not a header value: a warning naming the file, not the token", async () => {
    await using vault = await startVaultStandIn(TOKEN, { "secret/platform": { k8s_users: "{}" } });
    using root = makeTestRoot({
      settings: readSettings({ VAULT_ADDR: vault.address, DEVVM_ADMIN_HOME: "/home/admin" }),
    });
    mkdirSync(path.join(root.dir, "home/admin"), { recursive: true });
    writeFileSync(path.join(root.dir, "home/admin/.vault-token"), "hvs.tier\u0001check-token\n");
    const lines: string[] = [];
    await checkTiers({ ...root.ctx, log: { info: (m: string) => lines.push(m), debug: () => {} } }, ROSTER);
    expect(lines).toEqual([
      "warning: tiers not checked against the cluster: the Vault token in /home/admin/.vault-token is not a valid header value (it contains a control character); it was not sent",
    ]);
    expect(vault.reads).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "never reads a token file through a link the admin's home holds: the link is named, nothing is sent",
    async () => {
      await using vault = await startVaultStandIn(TOKEN, { "secret/platform": { k8s_users: "{}" } });
      using root = makeTestRoot({
        settings: readSettings({ VAULT_ADDR: vault.address, DEVVM_ADMIN_HOME: "/home/admin" }),
      });
      mkdirSync(path.join(root.dir, "home/admin"), { recursive: true });
      mkdirSync(path.join(root.dir, "root"));
      writeFileSync(path.join(root.dir, "root/secret"), `${TOKEN}\n`);
      chownSync(path.join(root.dir, "home/admin"), 4300, 4300);
      symlinkSync(path.join(root.dir, "root/secret"), path.join(root.dir, "home/admin/.vault-token"));
      const lines: string[] = [];
      await checkTiers({ ...root.ctx, log: { info: (m: string) => lines.push(m), debug: () => {} } }, ROSTER);
      expect(lines).toEqual([
        `warning: tiers not checked against the cluster: 4300: /home/admin/.vault-token is a link to ${path.join(root.dir, "root/secret")}: not followed, nothing done through it`,
      ]);
      expect(vault.reads).toEqual([]);
    },
  );
});
