import { readFile } from "node:fs/promises";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import { download } from "../lib/sources/download.ts";
import { LOCK_COMMAND, UserError } from "../lib/core/errors.ts";
import { applyResources, fixAttributes, writeFileAtomic } from "../lib/machine/files.ts";
import { BIN_DIR } from "../lib/machine/layout.ts";
import type { Stage } from "../lib/core/stage.ts";
import { JobKind } from "../lib/core/background.ts";
import {
  installedSha256,
  pinnedBinaryChanges,
  pinnedBinaryInventory,
  type PinnedBinary,
} from "../lib/tools/pinned-binary.ts";

// The Kubernetes CLI from the release downloads at a pinned version checked
// by sha256, never apt's: Debian 12's kubernetes-client is 1.20, far too old,
// and without kubectl the OIDC plugin and every kubeconfig are useless
// (docs/devvm.md stage 7).
const BINARY = `${BIN_DIR}/kubectl`;
const DOWNLOAD = new JobKind<void>((what) => `the download of ${what}`);

function pinned(ctx: BuildContext): { url: string; sha256: string } {
  const { version, sha256 } = ctx.inputs.pins.kubectl;
  if (!sha256) {
    throw new UserError(
      "pins.json has no kubectl.sha256",
      `run ${LOCK_COMMAND} where the release is reachable: it records it, trust on first use`,
    );
  }
  return { url: `${ctx.settings.kubernetesReleasesUrl}/${version}/bin/linux/amd64/kubectl`, sha256 };
}

const binary = (ctx: BuildContext): PinnedBinary => ({
  path: BINARY,
  name: "kubectl",
  version: ctx.inputs.pins.kubectl.version,
  sha256: pinned(ctx).sha256,
});

export default {
  name: "kubectl",
  description:
    "Installs kubectl (the Kubernetes CLI) at its pinned release from the Kubernetes downloads, verified by sha256",
  pins: ["kubectl.sha256"],
  async check(ctx) {
    return { changes: await pinnedBinaryChanges(ctx, binary(ctx)), managed: [{ path: BINARY }] };
  },
  async apply(ctx, { changes }) {
    if (changes.some((c) => c.kind === "package")) {
      const { url, sha256 } = pinned(ctx);
      // The cache holds only files that matched their pin; its name is the hash.
      const binary = await readFile(await download(ctx, url, { sha256, of: "kubectl's binary" }));
      await applyResources(ctx, [{ kind: "dir", path: BIN_DIR, mode: 0o755 }]);
      await writeFileAtomic(hostPath(ctx, BINARY), binary, { mode: 0o755, uid: 0, gid: 0 });
    } else if (changes.length > 0) {
      await fixAttributes(ctx, BINARY, 0o755);
    }
    return changes;
  },
  prepare(ctx) {
    // Into the download cache, where apply's download finds it.
    ctx.background?.job(DOWNLOAD, "kubectl").start(
      async () => {
        const { url, sha256 } = pinned(ctx);
        if ((await installedSha256(ctx, BINARY)) !== sha256)
          await download(ctx, url, { sha256, of: "kubectl's binary" });
      },
      { log: ctx.log },
    );
  },
  inventory: (ctx) => pinnedBinaryInventory(ctx, binary(ctx)),
} satisfies Stage;
