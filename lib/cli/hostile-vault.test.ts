// A build against a Vault that misbehaves: the token never leaves the
// Vault's origin, never appears in what the build prints or writes, and an
// endless answer ends at the secret's limit.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildAsyncWith, makeRootAndOutput, removeDirs } from "../../test/support/cli.ts";
import { sendEndless, startHostileServer } from "../../test/support/stand-ins/hostile-server.ts";

describe("build.ts", () => {
  let root: string;
  let output: string;
  beforeEach(() => void ({ root, output } = makeRootAndOutput()));
  afterEach(() => removeDirs(root, output));

  describe("against a hostile Vault", () => {
    const TOKEN = "hvs.CAESIhostileVaultTestToken0123456789";

    /** The vault-tokens stage under --root, as a separate process (the servers answer meanwhile). */
    function buildAgainst(vaultAddr: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
      return buildAsyncWith(
        { env: { VAULT_ADDR: vaultAddr, VAULT_TOKEN: TOKEN } },
        "--root",
        root,
        "--output",
        output,
        "--stage",
        "vault-tokens",
        "--json",
      );
    }

    /** No byte of the token in what the build printed or wrote. */
    function expectNoToken(run: { stdout: string; stderr: string }): void {
      const written = ["report.json", "manifest.json"].map((f) => readFileSync(path.join(output, f), "utf8"));
      for (const text of [run.stdout, run.stderr, ...written]) expect(text).not.toContain(TOKEN.slice(4));
    }

    it("a redirect to another origin is a warning; the token never reaches the other server", async () => {
      await using elsewhere = await startHostileServer((_url, response) => response.end("{}"));
      await using vault = await startHostileServer((_url, response) => {
        response.writeHead(307, { location: `${elsewhere.url}/v1/secret/data/workstation` });
        response.end();
      });
      const run = await buildAgainst(vault.url);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain(
        `redirected the read of secret/workstation to another origin, ${elsewhere.url}; the token was not sent there`,
      );
      expect(elsewhere.requests).toEqual([]);
      expect(vault.requests.map((r) => r.headers["x-vault-token"])).toEqual([TOKEN]);
      expectNoToken(run);
    });

    it("an endless answer stops at the secret's limit with a warning, and the build ends", async () => {
      await using vault = await startHostileServer((_url, response, server) => sendEndless(response, server));
      const run = await buildAgainst(vault.url);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("the limit for a Vault secret; stopped reading there");
      // Bounded: the server wrote little past the 1 MiB limit before the build hung up.
      expect(await vault.hungUp()).toBeLessThan(8 * 1024 * 1024);
      expectNoToken(run);
    });
  });
});
