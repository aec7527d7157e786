import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { BODY_LIMITS, MiB } from "../lib/sources/http-body.ts";
import { redactSecrets, Secret } from "../lib/core/secret.ts";
import { readKvSecret } from "../lib/sources/vault-kv.ts";
import { readSettings } from "../lib/inputs/settings.ts";
import { BuildSession } from "../lib/core/build-session.ts";
import { closedPort, makeTestRootWithAccounts } from "../test/support/test-context.ts";
import { sendEndless, startHostileServer } from "../test/support/stand-ins/hostile-server.ts";
import { startVaultStandIn } from "../test/support/stand-ins/vault.ts";
import type { Stage } from "../lib/core/stage.ts";
import vaultTokensStage from "./vault-tokens.ts";

/** What a Vault read needs of a build: its settings (no extra CA) and a session of its own. */
const http = () => ({ settings: readSettings({}), session: new BuildSession() });

const vaultTokens: Stage = vaultTokensStage;

const TOKEN = "hvs.stand-in-token-0123456789";
const OAUTH = "sk-ant-oat01-stand-in-oauth-value";
const AUTH_JSON = '{"OPENAI_API_KEY":null,"tokens":{"access_token":"stand-in-codex-access"}}\n';
const BOTH = { "secret/workstation": { claude_oauth_token: OAUTH, codex_shared_auth_json: AUTH_JSON } };

/** A test root with its own accounts, so groupadd --root works on it. */
const rootWithAccounts = (settings: Record<string, string>, strict = false) =>
  makeTestRootWithAccounts({ settings: readSettings(settings), strict });

const modeOf = (file: string) => (statSync(file).mode & 0o7777).toString(8);

describe("vault-tokens", () => {
  it("stages both fields with their owners and modes, creating the group and folders", async () => {
    await using vault = await startVaultStandIn(TOKEN, BOTH);
    using root = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN });
    const check = await vaultTokens.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    expect(JSON.stringify(check)).not.toContain(OAUTH);
    expect(JSON.stringify(check)).not.toContain("stand-in-codex-access");
    expect(check.managed).toEqual(
      expect.arrayContaining([
        { path: "/etc/t3-serve/claude-oauth-token", secret: true },
        { path: "/opt/codex-shared/auth.json", secret: true },
      ]),
    );
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
    expect(check).toEqual({
      skip: expect.stringMatching(/^warning: Vault refused the token .*HTTP 403.*left as they were$/),
    });
    expect(readFileSync(path.join(root.dir, "etc/t3-serve/claude-oauth-token"), "utf8")).toBe("old");

    using strict = rootWithAccounts({ VAULT_ADDR: vault.address, VAULT_TOKEN: "hvs.wrong-token" }, true);
    await expect(vaultTokens.check(strict.ctx)).rejects.toThrow(/HTTP 403/);
  });

  it("warns when Vault is unreachable or no token is found", async () => {
    const closed = await closedPort();
    using unreachable = rootWithAccounts({ VAULT_ADDR: `http://127.0.0.1:${closed}`, VAULT_TOKEN: TOKEN });
    expect(await vaultTokens.check(unreachable.ctx)).toEqual({
      skip: expect.stringMatching(/unreachable \(ECONNREFUSED\)/),
    });
    using noToken = rootWithAccounts({
      VAULT_ADDR: `http://127.0.0.1:${closed}`,
      DEVVM_ADMIN_HOME: "/home/nobody-here",
    });
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
    expect(lines.join("\n")).toMatch(
      /warning: .*no field codex_shared_auth_json; \/opt\/codex-shared\/auth.json left as it was/,
    );
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

describe("vault-tokens against a hostile Vault", () => {
  /** A root whose log lines are kept, as build.ts would print them (through redactSecrets). */
  const observed = (settings: Record<string, string>, strict = false) => {
    const root = rootWithAccounts(settings, strict);
    const lines: string[] = [];
    Object.assign(root.ctx, { log: { info: (m: string) => lines.push(redactSecrets(m)), debug: () => {} } });
    return { root, lines };
  };

  it("stops an endless answer at 1 MiB: a warning, an error with --strict", async () => {
    await using vault = await startHostileServer((_, response, state) => sendEndless(response, state));
    using root = rootWithAccounts({ VAULT_ADDR: vault.url, VAULT_TOKEN: TOKEN });
    expect(await vaultTokens.check(root.ctx)).toEqual({
      skip: `warning: Vault's answer for secret/workstation at ${vault.url}: the answer passed 1 MiB, the limit for a Vault secret; stopped reading there; staged secrets left as they were`,
    });
    expect(await vault.hungUp()).toBeLessThan(BODY_LIMITS.secret + 32 * MiB);
    using strict = rootWithAccounts({ VAULT_ADDR: vault.url, VAULT_TOKEN: TOKEN }, true);
    await expect(vaultTokens.check(strict.ctx)).rejects.toThrow("the limit for a Vault secret");
  });

  it("refuses a redirect to another origin, naming both, and never sends the token there", async () => {
    await using elsewhere = await startVaultStandIn(TOKEN, BOTH);
    await using vault = await startHostileServer((url, response) =>
      response.writeHead(307, { location: `${elsewhere.address}${url}` }).end(),
    );
    using root = rootWithAccounts({ VAULT_ADDR: vault.url, VAULT_TOKEN: TOKEN });
    expect(await vaultTokens.check(root.ctx)).toEqual({
      skip: `warning: Vault at ${vault.url} redirected the read of secret/workstation to another origin, ${elsewhere.address}; the token was not sent there (set VAULT_ADDR to the address that answers, e.g. the active node's); staged secrets left as they were`,
    });
    expect(elsewhere.reads).toEqual([]);
    expect(vault.requests.map((r) => r.url)).toEqual(["/v1/secret/data/workstation"]);
  });

  it("follows a redirect within Vault's origin, with the token", async () => {
    // A standby answering 307 to a path of the same origin.
    await using vault = await startHostileServer((url, response) => {
      if (url.startsWith("/standby/"))
        return void response.writeHead(307, { location: url.slice("/standby".length) }).end();
      response
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ data: { data: { claude_oauth_token: OAUTH } } }));
    });
    const read = await readKvSecret(
      http(),
      { address: `${vault.url}/standby`, mount: "secret", path: "workstation" },
      new Secret(TOKEN),
    );
    expect(read.ok && read.fields.get("claude_oauth_token")?.reveal()).toBe(OAUTH);
    expect(vault.requests.map((r) => [r.url, r.headers["x-vault-token"] === TOKEN])).toEqual([
      ["/standby/v1/secret/data/workstation", true],
      ["/v1/secret/data/workstation", true],
    ]);
  });

  it("refuses a token file with a line break before anything is sent, naming the file, never the token", async () => {
    const badToken = "hvs.firsthalf-of-token\nsecondhalf-of-token";
    await using vault = await startVaultStandIn(TOKEN, BOTH);
    const { root, lines } = observed({ VAULT_ADDR: vault.address, DEVVM_ADMIN_HOME: "/home/admin" });
    using _ = root;
    mkdirSync(path.join(root.dir, "home/admin"), { recursive: true });
    writeFileSync(path.join(root.dir, "home/admin/.vault-token"), `${badToken}\n`);
    const check = await vaultTokens.check(root.ctx);
    expect(check).toEqual({
      skip: "warning: the Vault token in /home/admin/.vault-token is not a valid header value (it contains a line break); it was not sent; staged secrets left as they were",
    });
    expect(vault.reads).toEqual([]);

    const { root: strictRoot } = observed({ VAULT_ADDR: vault.address, DEVVM_ADMIN_HOME: "/home/admin" }, true);
    using __ = strictRoot;
    mkdirSync(path.join(strictRoot.dir, "home/admin"), { recursive: true });
    writeFileSync(path.join(strictRoot.dir, "home/admin/.vault-token"), badToken);
    const error = (await vaultTokens.check(strictRoot.ctx).catch((e: unknown) => e)) as Error;
    expect(error.message).toContain("/home/admin/.vault-token");
    for (const text of [JSON.stringify(check), error.message, error.stack ?? "", lines.join("\n")]) {
      expect(text).not.toContain("firsthalf");
      expect(text).not.toContain("secondhalf");
    }
    expect(vault.reads).toEqual([]);
  });

  it("never sends a token that is not a header value, whoever made it", async () => {
    await using vault = await startHostileServer((_, response) => response.end("{}"));
    const read = await readKvSecret(
      http(),
      { address: vault.url, mount: "secret", path: "workstation" },
      new Secret("hvs.bad\rtoken-value"),
    );
    expect(read).toEqual({
      ok: false,
      problem: "bad-token",
      message: `the Vault token is not a valid header value (it contains a line break); it was not sent to ${vault.url}`,
    });
    expect(vault.requests).toEqual([]);
  });
});
