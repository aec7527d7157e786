import { createServer } from "node:http";
import { describe, expect, it } from "vitest";
import { verifyIntegrity } from "./npm-staged-install.ts";
import { INTEGRITY, startFakeRegistry, testRoot } from "../../test/support/fixtures/npm-cli.ts";

describe("verifyIntegrity", () => {
  it("passes when the registry serves the pinned integrity, asking for the exact version", async () => {
    const registry = await startFakeRegistry(INTEGRITY);
    using root = testRoot({ npmRegistry: registry.url });
    try {
      await verifyIntegrity(root.ctx, "t3", { version: "0.0.26", integrity: INTEGRITY });
      expect(registry.requests).toEqual(["/t3/0.0.26"]);
    } finally {
      await registry.close();
    }
  });

  it("names the status when the registry has no such version", async () => {
    const server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    using root = testRoot({ npmRegistry: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
    try {
      await expect(verifyIntegrity(root.ctx, "t3", { version: "0.0.26", integrity: INTEGRITY })).rejects.toThrow(
        /t3@0\.0\.26 is not in the registry/,
      );
    } finally {
      server.close();
    }
  });
});
