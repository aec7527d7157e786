// The program claude-auth-sync (files/service/claude-auth-sync), run as this
// test's own user with a temporary HOME, against the Vault stand-in and a
// stand-in claude that answers OK, or fails as a 401 would, by the access
// token in ~/.claude/.credentials.json. The container test (test/logins.test.ts)
// runs it through its unit on a box; this one shows its decisions quickly.
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startVaultStandIn, type VaultStandIn } from "../test/support/stand-ins/vault.ts";

const user = userInfo().username;
const SECRET = `secret/workstation/claude-users/${user}`;
const PROGRAM = path.join(import.meta.dirname, "../files/service/claude-auth-sync");
const CLAUDE = `#!${process.execPath}
const fs = require("node:fs");
let token = "";
try { token = JSON.parse(fs.readFileSync(process.env.HOME + "/.claude/.credentials.json", "utf8")).claudeAiOauth.accessToken; } catch {}
if (token.startsWith("good")) { console.log("OK"); process.exit(0); }
console.error("API Error: 401 authentication_error"); process.exit(1);
`;

describe("claude-auth-sync", () => {
  let dir: string;
  let home: string;
  let vault: VaultStandIn;
  const file = (p: string) => path.join(home, p);
  const credentials = (accessToken: string) =>
    writeFileSync(
      file(".claude/.credentials.json"),
      JSON.stringify({ claudeAiOauth: { accessToken, expiresAt: 7 }, mcpOAuth: { m: "mcp-secret" } }),
    );
  const useToken = (displayName: string, policy: string) =>
    writeFileSync(file(".config/claude-auth-sync/vault-token"), `${vault.mint(displayName, [policy])}\n`, {
      mode: 0o600,
    });
  // Async: the stand-in answers from this process.
  const run = () =>
    new Promise<{ code: number; out: string }>((resolve) =>
      execFile(
        process.execPath,
        [path.join(dir, "claude-auth-sync"), user],
        { env: { HOME: home, PATH: `${file(".local/bin")}:/usr/bin:/bin`, VAULT_ADDR: vault.address } },
        (error, stdout) => resolve({ code: error ? Number(error.code) : 0, out: stdout.trim() }),
      ),
    );

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "devvm-claude-auth-sync-"));
    // Outside the repository: installed, the program is CommonJS with no package.json around it.
    copyFileSync(PROGRAM, path.join(dir, "claude-auth-sync"));
    home = path.join(dir, "home");
    for (const d of [".claude", ".config/claude-auth-sync", ".local/state/claude-auth-sync", ".local/bin"])
      mkdirSync(file(d), { recursive: true, mode: 0o700 });
    writeFileSync(file(".local/bin/claude"), CLAUDE, { mode: 0o755 });
    vault = await startVaultStandIn("root-token", {
      [SECRET]: { note: "a neighbour", nested: { list: [1, "two"] }, claudeAiOauth: { accessToken: "good-saved" } },
    });
    useToken(`devvm-claude-auth-${user}`, `workstation-claude-${user}`);
  });
  afterEach(async () => {
    await vault[Symbol.asyncDispose]();
    rmSync(dir, { recursive: true, force: true });
  });

  it("merges a working login into Vault with cas, neighbours kept, mcpOAuth left out, the token renewed", async () => {
    credentials("good-now");
    const { code, out } = await run();
    expect(code).toBe(0);
    expect(out).toMatch(new RegExp(`^user=${user} OK login works; backed up to Vault \\(version 2\\)$`));
    const { data } = vault.secret(SECRET)!;
    expect(data).toMatchObject({ note: "a neighbour", nested: { list: [1, "two"] }, credential_expires_at_ms: 7 });
    expect(data.claudeAiOauth).toEqual({ accessToken: "good-now", expiresAt: 7 });
    expect(JSON.stringify(data)).not.toContain("mcp-secret");
    const write = vault.requests.find(
      (r) => r.method === "POST" && r.path.endsWith(SECRET.replace("secret/", "/data/")),
    );
    expect((write?.body as { options: { cas: number } }).options.cas).toBe(1);
    expect(vault.requests.map((r) => r.path)).toContain("/v1/auth/token/renew-self");
    expect(readFileSync(file(".local/state/claude-auth-sync/last"), "utf8")).toContain(`user=${user} OK`);
  });

  it("restores a dead login from Vault once and checks again (RECOVERED); FAIL when that one is dead too", async () => {
    credentials("expired");
    expect((await run()).out).toMatch(/ RECOVERED restored from Vault and checked; backed up/);
    expect(JSON.parse(readFileSync(file(".claude/.credentials.json"), "utf8"))).toEqual({
      claudeAiOauth: { accessToken: "good-saved" },
      mcpOAuth: { m: "mcp-secret" },
    });
    vault.setSecret(SECRET, { claudeAiOauth: { accessToken: "also-dead" } });
    credentials("expired");
    const failed = await run();
    expect(failed.code).toBe(1);
    expect(failed.out).toContain(" FAIL the login fails, and still fails with the one restored from Vault");
  });

  it("writes a setup token from Vault as claude-oauth.env, 0600, without a request", async () => {
    vault.setSecret(SECRET, { setup_token: "sk-ant-oat01-test-setup" });
    expect((await run()).out).toContain(" OK setup token from Vault written to ");
    expect(readFileSync(file(".config/claude-auth-sync/claude-oauth.env"), "utf8")).toBe(
      "CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-test-setup\n",
    );
    expect(statSync(file(".config/claude-auth-sync/claude-oauth.env")).mode & 0o777).toBe(0o600);
    expect((await run()).out).toContain(", unchanged");
  });

  it("refuses another user's token, or one without the policy, with nothing read or written", async () => {
    for (const [name, policy] of [
      ["devvm-claude-auth-bob", "workstation-claude-bob"],
      [`devvm-claude-auth-${user}`, "workstation-claude-bob"],
    ]) {
      useToken(name!, policy!);
      const seen = vault.requests.length;
      const { code, out } = await run();
      expect(code).toBe(1);
      expect(out).toContain(`: it is not ${user}'s`);
      expect(vault.requests.slice(seen).map((r) => r.path)).toEqual(["/v1/auth/token/lookup-self"]);
    }
  });

  it("skips a user with no login and none in Vault, and one without a Vault token", async () => {
    vault.setSecret(SECRET, { note: "nothing else" });
    expect((await run()).out).toMatch(/ SKIP no login of .* own/);
    rmSync(file(".config/claude-auth-sync/vault-token"));
    const { code, out } = await run();
    expect([code, out]).toEqual([0, expect.stringContaining(" SKIP no Vault token at ")]);
  });
});
