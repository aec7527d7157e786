import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { UserError } from "../lib/core/errors.ts";
import { loadInputs } from "../lib/inputs/index.ts";
import { readSettings } from "../lib/inputs/settings.ts";
import { checkThenApply, makeTestRoot } from "../test/support/test-context.ts";
import { kubectlReleaseFiles, makeKubectl, makeTamperedKubectl } from "../test/support/fixtures/kubectl.ts";
import { startArtifactStandIn } from "../test/support/stand-ins/artifacts.ts";
import stage from "./kubectl.ts";

const repo = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** A root whose pins hold the fixture's hash, downloading from a release stand-in serving `served`. */
async function setup(served: (version: string) => Buffer) {
  const inputs = await loadInputs(repo);
  const { version } = inputs.pins.kubectl;
  const good = makeKubectl(version);
  const releases = await startArtifactStandIn(kubectlReleaseFiles(version, served(version)));
  inputs.pins.kubectl = { version, sha256: good.sha256 };
  const root = makeTestRoot({ inputs, settings: readSettings({ DEVVM_KUBERNETES_RELEASES_URL: releases.url }) });
  return { version, good, releases, root };
}

describe("kubectl", () => {
  it("installs the verified binary 0755, records its version, then has nothing to do", async () => {
    const { version, good, releases, root } = await setup((v) => makeKubectl(v).binary);
    await using _ = releases;
    using __ = root;
    const pending = await stage.check(root.ctx);
    expect("changes" in pending && pending.changes).toEqual([
      { kind: "package", name: "kubectl", from: null, to: version },
    ]);
    await checkThenApply(stage, root.ctx);
    const binary = path.join(root.dir, "usr/local/bin/kubectl");
    expect(readFileSync(binary).equals(good.binary)).toBe(true);
    expect(statSync(binary).mode & 0o7777).toBe(0o755);
    expect(releases.requests()).toEqual([{ method: "GET", path: `/${version}/bin/linux/amd64/kubectl`, status: 200 }]);
    expect(await stage.inventory(root.ctx)).toEqual({ kubectl: version });
    releases.clearRequests();
    expect(await stage.check(root.ctx)).toMatchObject({ changes: [] });
    expect(await checkThenApply(stage, root.ctx)).toEqual([]);
    expect(releases.requests()).toEqual([]);
  });

  it("fixes a drifted mode without downloading again", async () => {
    const { releases, root } = await setup((v) => makeKubectl(v).binary);
    await using _ = releases;
    using __ = root;
    await checkThenApply(stage, root.ctx);
    chmodSync(path.join(root.dir, "usr/local/bin/kubectl"), 0o700);
    releases.clearRequests();
    expect(await checkThenApply(stage, root.ctx)).toEqual([
      { kind: "mode", path: "/usr/local/bin/kubectl", from: "0700", to: "0755" },
    ]);
    expect(statSync(path.join(root.dir, "usr/local/bin/kubectl")).mode & 0o7777).toBe(0o755);
    expect(releases.requests()).toEqual([]);
  });

  it("installs nothing when the artifact's hash does not match, and names both hashes", async () => {
    const { version, good, releases, root } = await setup((v) => makeTamperedKubectl(v).binary);
    await using _ = releases;
    using __ = root;
    const error = await checkThenApply(stage, root.ctx).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain(`expected sha256 ${good.sha256}, received ${makeTamperedKubectl(version).sha256}`);
    expect(existsSync(path.join(root.dir, "usr/local/bin"))).toBe(false);
    // Nothing half-downloaded is left in the cache either.
    expect(existsSync(root.ctx.cacheDir) ? readdirSync(path.join(root.ctx.cacheDir, "sha256")) : []).toEqual([]);
    expect(await stage.inventory(root.ctx)).toEqual({ kubectl: "absent or not the pinned build" });
  });

  it("without a pinned sha256, fails before downloading and says to run lock", async () => {
    const { releases, root } = await setup((v) => makeKubectl(v).binary);
    await using _ = releases;
    using __ = root;
    root.ctx.inputs.pins.kubectl = { version: root.ctx.inputs.pins.kubectl.version };
    const error = await stage.check(root.ctx).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UserError);
    expect(error).toMatchObject({
      message: "pins.json has no kubectl.sha256",
      hint: expect.stringContaining("build.ts lock"),
    });
    expect(releases.requests()).toEqual([]);
  });
});
