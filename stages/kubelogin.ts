import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import { download } from "../lib/sources/download.ts";
import { LOCK_COMMAND, UserError } from "../lib/core/errors.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, checkResources, fixAttributes, writeFileAtomic, type Resource } from "../lib/machine/files.ts";
import { BIN_DIR } from "../lib/machine/layout.ts";
import type { Stage } from "../lib/core/stage.ts";
import { JobKind } from "../lib/core/background.ts";
import {
  installedSha256,
  pinnedBinaryChanges,
  pinnedBinaryInventory,
  type PinnedBinary,
} from "../lib/tools/pinned-binary.ts";

// The kubectl OIDC plugin (int128/kubelogin), never apt's Azure tool of the
// same name, at a pinned release checked by sha256: it once followed
// `latest` and two boxes built weeks apart differed (docs/devvm.md stage 7).
const BINARY = `${BIN_DIR}/kubelogin`;
const LINK: Resource = { kind: "symlink", path: `${BIN_DIR}/kubectl-oidc_login`, target: BINARY };
const DOWNLOAD = new JobKind<void>((what) => `the download of ${what}`);

function pinned(ctx: BuildContext): { url: string; sha256: string; binarySha256: string } {
  const { version, asset, sha256, binarySha256 } = ctx.inputs.pins.kubelogin;
  if (!sha256 || !binarySha256) {
    throw new UserError(
      "pins.json has no kubelogin.sha256 and binarySha256",
      `run ${LOCK_COMMAND} where the release is reachable: it records both, trust on first use`,
    );
  }
  return { url: `${ctx.settings.releasesUrl}/${version}/${asset}`, sha256, binarySha256 };
}

const binary = (ctx: BuildContext): PinnedBinary => ({
  path: BINARY,
  name: "kubelogin",
  version: ctx.inputs.pins.kubelogin.version,
  sha256: pinned(ctx).binarySha256,
});
const binaryChanges = (ctx: BuildContext) => pinnedBinaryChanges(ctx, binary(ctx));

/** Downloads (or takes from the cache) the pinned zip and returns the binary in it, verified. */
async function pinnedBinary(ctx: BuildContext): Promise<Buffer> {
  const { url, sha256, binarySha256 } = pinned(ctx);
  const zip = await download(ctx, url, { sha256, of: "kubelogin's zip" });
  const dir = await mkdtemp(path.join(tmpdir(), "devvm-kubelogin-"));
  try {
    // unzip comes from the apt stage (docs/devvm.md lesson: it was once missing).
    await run(ctx, "unzip", ["-q", "-o", zip, "kubelogin", "-d", dir]);
    const binary = await readFile(path.join(dir, "kubelogin"));
    const received = createHash("sha256").update(binary).digest("hex");
    if (received !== binarySha256)
      throw new UserError(
        `the kubelogin binary in ${url} does not match its pin: expected sha256 ${binarySha256}, received ${received}`,
        "nothing was installed; refresh the pin with `build.ts lock` only if the release is trusted",
      );
    return binary;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export default {
  name: "kubelogin",
  description:
    "Installs kubelogin (int128, the kubectl OIDC plugin) at its pinned release, verified by sha256, with the kubectl-oidc_login link",
  pins: ["kubelogin.sha256", "kubelogin.binarySha256"],
  async check(ctx) {
    const binary = await binaryChanges(ctx);
    return {
      changes: [...binary, ...(await checkResources(ctx, [LINK]))],
      managed: [{ path: BINARY }, { path: LINK.path }],
      plan: { binary },
    };
  },
  async apply(ctx, { plan: { binary: changes } }) {
    if (changes.some((c) => c.kind === "package")) {
      const binary = await pinnedBinary(ctx);
      await applyResources(ctx, [{ kind: "dir", path: BIN_DIR, mode: 0o755 }]);
      await writeFileAtomic(hostPath(ctx, BINARY), binary, { mode: 0o755, uid: 0, gid: 0 });
    } else if (changes.length > 0) {
      await fixAttributes(ctx, BINARY, 0o755);
    }
    return [...changes, ...(await applyResources(ctx, [LINK]))];
  },
  prepare(ctx) {
    // Into the download cache, where apply's download finds it.
    ctx.background?.job(DOWNLOAD, "kubelogin").start(
      async () => {
        if ((await installedSha256(ctx, BINARY)) !== pinned(ctx).binarySha256)
          await download(ctx, pinned(ctx).url, { sha256: pinned(ctx).sha256, of: "kubelogin's zip" });
      },
      { log: ctx.log },
    );
  },
  inventory: (ctx) => pinnedBinaryInventory(ctx, binary(ctx)),
} satisfies Stage<{ binary: Change[] }>;
