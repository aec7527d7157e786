import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { kubectlReleaseFiles, makeKubectl } from "../test/fixtures/kubectl.ts";
import { startArtifactStandIn } from "../test/stand-ins/artifacts.ts";
import { kubectlPin, parseUpdates } from "./lock-command.ts";
import { readSettings } from "./settings.ts";

describe("lock --update", () => {
  it("reads NAME and NAME@VERSION, scoped or not", () => {
    expect([...parseUpdates(["codex", "node@22.20.0", "claude-code@2.1.400"])]).toEqual([
      ["codex", undefined],
      ["node", "22.20.0"],
      ["claude-code", "2.1.400"],
    ]);
  });

  it("moves t3 only to an exact version, asked by name", () => {
    expect(() => parseUpdates(["t3"])).toThrow("exact version");
    expect(parseUpdates(["t3@0.0.27"]).get("t3")).toBe("0.0.27");
  });

  it("refuses names it cannot update", () => {
    expect(() => parseUpdates(["kubectl"])).toThrow('cannot update "kubectl"');
  });
});

describe("lock, for kubectl", () => {
  const VERSION = "v1.36.4";

  async function lockContext() {
    const releases = await startArtifactStandIn(kubectlReleaseFiles(VERSION, makeKubectl(VERSION).binary));
    const cacheDir = mkdtempSync(path.join(tmpdir(), "devvm-lock-cache-"));
    const logged: string[] = [];
    const ctx = { settings: readSettings({ DEVVM_KUBERNETES_RELEASES_URL: releases.url }), cacheDir, log: { info: (line: string) => logged.push(line), debug: () => {} } };
    return { releases, ctx, logged, [Symbol.dispose]: () => rmSync(cacheDir, { recursive: true, force: true }) };
  }

  it("fills a missing sha256 by downloading and hashing, and says it trusted on first use", async () => {
    using lock = await lockContext();
    await using _ = lock.releases;
    const warnings: string[] = [];
    const { sha256 } = makeKubectl(VERSION);
    expect(await kubectlPin(lock.ctx, { version: VERSION }, warnings)).toEqual({ version: VERSION, sha256 });
    expect(warnings).toEqual([]);
    expect(lock.logged).toEqual([expect.stringMatching(new RegExp(`^trust on first use: recorded kubectl ${VERSION} as sha256 ${sha256}; compare it with .*/${VERSION}/bin/linux/amd64/kubectl\\.sha256$`))]);
    // Left in the cache under its hash, so the build that follows downloads nothing.
    expect(readFileSync(path.join(lock.ctx.cacheDir, "sha256", sha256)).equals(makeKubectl(VERSION).binary)).toBe(true);
  });

  it("keeps a recorded sha256 without asking the release", async () => {
    using lock = await lockContext();
    await using _ = lock.releases;
    const pin = { version: VERSION, sha256: "0".repeat(64) };
    expect(await kubectlPin(lock.ctx, pin, [])).toBe(pin);
    expect(lock.releases.requests()).toEqual([]);
  });

  it("warns and leaves the sha256 missing when the release is out of reach", async () => {
    using lock = await lockContext();
    await using _ = lock.releases;
    const warnings: string[] = [];
    expect(await kubectlPin(lock.ctx, { version: "v1.36.5" }, warnings)).toEqual({ version: "v1.36.5" });
    expect(warnings).toEqual([expect.stringMatching(/v1\.36\.5\/bin\/linux\/amd64\/kubectl: GET .* HTTP 404; kubectl's sha256 stays missing$/)]);
  });
});
