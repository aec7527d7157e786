// A release binary pinned by sha256 (kubelogin, kubectl): "already
// installed?" is the installed file's hash (remembered while the file is
// unchanged), never a run of the binary or an installer.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Change } from "../core/change.ts";
import { hostPath, type BuildContext } from "../core/context.ts";
import { checkAttributes } from "../machine/files.ts";
import { whileUnchanged } from "../machine/unchanged-file-memo.ts";

export interface PinnedBinary {
  /** Machine path, installed 0755 root:root. */
  path: string;
  name: string;
  version: string;
  sha256: string;
}

export async function installedSha256(
  ctx: Pick<BuildContext, "root" | "session">,
  machinePath: string,
): Promise<string | null> {
  const file = hostPath(ctx, machinePath);
  return (
    (await whileUnchanged(ctx, file, async () =>
      createHash("sha256")
        .update(await readFile(file))
        .digest("hex"),
    )) ?? null
  );
}

/** The manifest's line for it: its version when the installed file is the pinned build. */
export async function pinnedBinaryInventory(
  ctx: Pick<BuildContext, "root" | "session">,
  binary: PinnedBinary,
): Promise<Record<string, string>> {
  const pinnedBuild = (await installedSha256(ctx, binary.path)) === binary.sha256;
  return { [binary.name]: pinnedBuild ? binary.version : "absent or not the pinned build" };
}

/** A package change when the file is not the pinned build; else its mode and owner drift. */
export async function pinnedBinaryChanges(ctx: BuildContext, binary: PinnedBinary): Promise<Change[]> {
  const current = await installedSha256(ctx, binary.path);
  if (current === binary.sha256) return checkAttributes(ctx, binary.path, 0o755);
  return [
    { kind: "package", name: binary.name, from: current ? `sha256 ${current.slice(0, 12)}` : null, to: binary.version },
  ];
}
