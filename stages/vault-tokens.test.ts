import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Secret } from "../lib/secret.ts";
import { readSettings } from "../lib/settings.ts";
import { makeTestRootWithAccounts } from "../lib/test-context.ts";
import { startVaultStandIn } from "../test/fixtures/vault-stand-in.ts";
import type { Stage } from "../lib/stage.ts";
import vaultTokensStage from "./vault-tokens.ts";

const vaultTokens: Stage = vaultTokensStage;

const TOKEN = "hvs.stand-in-token-0123456789";
const OAUTH = "sk-ant-oat01-stand-in-oauth-value";
const AUTH_JSON = '{"OPENAI_API_KEY":null,"tokens":{"access_token":"stand-in-codex-access"}}\n';
const BOTH = { "secret/workstation": { claude_oauth_token: OAUTH, codex_shared_auth_json: AUTH_JSON } };

/** A test root with its own accounts, so groupadd --root works on it. */
const rootWithAccounts = (settings: Record<string, string>, strict = false) => makeTestRootWithAccounts({ settings: readSettings(settings), strict });

/** A port nothing listens on (it did a moment ago, so it is free). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(() => resolve(undefined)));
  return port;
}

const modeOf = (file: string) => (statSync(file).mode & 0o7777).toString(8);

describe("vault-tokens", () => {
  it("stages both fields with their owners and modes, creating the group and folders", async () => {
    await using vault = await startVaultStandIn(TOKEN, BOTH);
    using root = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN });
    const check = await vaultTokens.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    expect(JSON.stringify(check)).not.toContain(OAUTH);
    expect(JSON.stringify(check)).not.toContain("stand-in-codex-access");
    expect(check.managed).toEqual(expect.arrayContaining([{ path: "/etc/t3-serve/claude-oauth-token", secret: true }, { path: "/opt/codex-shared/auth.json", secret: true }]));
    const changes = await vaultTokens.apply(root.ctx, check);
    expect(changes[0]).toEqual({ kind: "action", description: "create system group codex-shared" });
    expect(JSON.stringify(changes)).not.toContain(OAUTH);

    const gid = Number(/^codex-shared:x:(\d+):/m.exec(readFileSync(path.join(root.dir, "etc/group"), "utf8"))![1]);
    const token = path.join(root.dir, "etc/t3-serve/claude-oauth-token");
    const auth = path.join(root.dir, "opt/codex-shared/auth.json");
    expect(readFileSync(token, "utf8")).toBe(OAUTH);
    expect(readFileSync(auth, "utf8")).toBe(AUTH_JSON);
    expect([modeOf(token), statSync(token).uid, statSync(token).gid]).toEqual(["600", 0, 0]);
    expect([modeOf(auth), statSync(auth).uid, statSync(auth).gid]).toEqual(["660", 0, gid]);
    expect([modeOf(path.dirname(auth)), statSync(path.dirname(auth)).gid]).toEqual(["2770", gid]);
    expect(modeOf(path.dirname(token))).toBe("755");

    const again = await vaultTokens.check(root.ctx);
    expect(again).toMatchObject({ changes: [] });
  });

  it("reads the admin's ~/.vault-token when VAULT_TOKEN is unset", async () => {
    await using vault = await startVaultStandIn(TOKEN, BOTH);
    using root = rootWithAccounts({ VAULT_ADDR: vault.address, DEVVM_ADMIN_HOME: "/home/admin" });
    mkdirSync(path.join(root.dir, "home/admin"), { recursive: true });
    writeFileSync(path.join(root.dir, "home/admin/.vault-token"), `${TOKEN}\n`);
    const check = await vaultTokens.check(root.ctx);
    expect("changes" in check && check.changes.length).toBeGreaterThan(0);
    expect(vault.reads).toEqual([{ path: "secret/workstation", tokenMatched: true }]);
  });

  it("warns on a 403 and leaves staged files untouched; fails with --strict", async () => {
    await using vault = await startVaultStandIn(TOKEN, BOTH);
    using root = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: "hvs.wrong-token" });
    mkdirSync(path.join(root.dir, "etc/t3-serve"), { recursive: true });
    writeFileSync(path.join(root.dir, "etc/t3-serve/claude-oauth-token"), "old", { mode: 0o600 });
    const check = await vaultTokens.check(root.ctx);
    expect(check).toEqual({ skip: expect.stringMatching(/^warning: Vault refused the token .*HTTP 403.*left as they were$/) });
    expect(readFileSync(path.join(root.dir, "etc/t3-serve/claude-oauth-token"), "utf8")).toBe("old");

    using strict = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: "hvs.wrong-token" }, true);
    await expect(vaultTokens.check(strict.ctx)).rejects.toThrow(/HTTP 403/);
  });

  it("warns when Vault is unreachable or no token is found", async () => {
    const closed = await closedPort();
    using unreachable = rootWithAccounts({ VAULT_ADDR: `http://127.0.0.1:${closed}`, VAULT_TOKEN: TOKEN });
    expect(await vaultTokens.check(unreachable.ctx)).toEqual({ skip: expect.stringMatching(/unreachable \(ECONNREFUSED\)/) });
    using noToken = rootWithAccounts({ VAULT_ADDR: `http://127.0.0.1:${closed}`, DEVVM_ADMIN_HOME: "/home/nobody-here" });
    expect(await vaultTokens.check(noToken.ctx)).toEqual({ skip: expect.stringMatching(/no Vault token/) });
  });

  it("stages the fields that are there and warns about a missing one, leaving its file as it was", async () => {
    await using vault = await startVaultStandIn(TOKEN, { "secret/workstation": { claude_oauth_token: OAUTH } });
    const lines: string[] = [];
    using root = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN });
    Object.assign(root.ctx, { log: { info: (m: string) => lines.push(m), debug: () => {} } });
    const check = await vaultTokens.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    await vaultTokens.apply(root.ctx, check);
    expect(lines.join("\n")).toMatch(/warning: .*no field codex_shared_auth_json; \/opt\/codex-shared\/auth.json left as it was/);
    expect(readFileSync(path.join(root.dir, "etc/t3-serve/claude-oauth-token"), "utf8")).toBe(OAUTH);
    expect(() => statSync(path.join(root.dir, "opt/codex-shared/auth.json"))).toThrow();

    using strict = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN }, true);
    await expect(vaultTokens.check(strict.ctx)).rejects.toThrow(/no field codex_shared_auth_json/);
  });

  it("keeps the token a Secret in the settings", () => {
    const settings = readSettings({ VAULT_TOKEN: TOKEN });
    expect(settings.vaultToken).toBeInstanceOf(Secret);
    expect(JSON.stringify(settings)).not.toContain(TOKEN);
  });
});
