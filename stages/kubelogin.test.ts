import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadInputs } from "../lib/inputs/index.ts";
import { readSettings } from "../lib/inputs/settings.ts";
import { checkThenApply, makeTestRoot } from "../test/support/test-context.ts";
import {
  kubeloginReleaseFiles,
  makeKubeloginZip,
  makeTamperedKubeloginZip,
} from "../test/support/fixtures/kubelogin.ts";
import { startArtifactStandIn } from "../test/support/stand-ins/artifacts.ts";
import stage from "./kubelogin.ts";

const repo = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** A root whose pins hold the fixture's hashes, downloading from a release stand-in serving `served`. */
async function setup(served: Buffer) {
  const good = await makeKubeloginZip();
  const releases = await startArtifactStandIn(kubeloginReleaseFiles(served));
  const inputs = await loadInputs(repo);
  inputs.pins.kubelogin = { ...inputs.pins.kubelogin, sha256: good.zipSha256, binarySha256: good.binarySha256 };
  const root = makeTestRoot({ inputs, settings: readSettings({ DEVVM_RELEASES_URL: releases.url }) });
  return { good, releases, root };
}

describe("kubelogin", () => {
  it("installs the verified binary 0755 with the kubectl-oidc_login link, then has nothing to do", async () => {
    const { good, releases, root } = await setup((await makeKubeloginZip()).zip);
    await using _ = releases;
    using __ = root;
    const pending = await stage.check(root.ctx);
    expect("changes" in pending && pending.changes[0]).toMatchObject({
      kind: "package",
      name: "kubelogin",
      from: null,
      to: "v1.36.2",
    });
    await checkThenApply(stage, root.ctx);
    const binary = path.join(root.dir, "usr/local/bin/kubelogin");
    expect(readFileSync(binary).equals(good.binary)).toBe(true);
    expect(statSync(binary).mode & 0o7777).toBe(0o755);
    expect(lstatSync(path.join(root.dir, "usr/local/bin/kubectl-oidc_login")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(root.dir, "usr/local/bin/kubectl-oidc_login"))).toBe("/usr/local/bin/kubelogin");
    releases.clearRequests();
    expect(await stage.check(root.ctx)).toMatchObject({ changes: [] });
    expect(releases.requests()).toEqual([]);
  });

  it("installs nothing when the artifact's hash does not match, and names both hashes", async () => {
    const tampered = await makeTamperedKubeloginZip();
    const { good, releases, root } = await setup(tampered.zip);
    await using _ = releases;
    using __ = root;
    const error = await checkThenApply(stage, root.ctx).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain(`expected sha256 ${good.zipSha256}, received ${tampered.zipSha256}`);
    expect(existsSync(path.join(root.dir, "usr/local/bin"))).toBe(false);
    // Nothing half-downloaded is left in the cache either.
    expect(existsSync(root.ctx.cacheDir) ? readdirSync(path.join(root.ctx.cacheDir, "sha256")) : []).toEqual([]);
  });
});
