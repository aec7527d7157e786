// manifest.json: every path the build manages, as it is on the machine after
// the build. Sorted, no timestamps: two builds compare byte for byte.
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import type { BuildContext } from "../core/context.ts";
import { formatMode } from "../core/change.ts";
import type { Managed } from "../machine/files.ts";
import { look, typeName, UnsafePathError, type Found } from "../machine/safe-path.ts";

export const MANIFEST_VERSION = 2;

export interface ManifestEntry {
  path: string;
  /** The stage that manages it. */
  stage: string;
  type: "file" | "folder" | "symlink" | "special file" | "absent";
  mode?: string;
  owner?: string;
  group?: string;
  /** Of the content; never recorded for a secret. */
  sha256?: string;
  /** A secret's content is not hashed: a hash of a short token can be brute-forced. */
  secret?: true;
  target?: string;
}

export interface PackageEntry {
  /** "apt:git", "npm:@openai/codex", "node". */
  name: string;
  version: string;
  stage: string;
}

export interface Manifest {
  manifestVersion: number;
  paths: ManifestEntry[];
  packages: PackageEntry[];
}

/**
 * Entries for the stages that ran; those of stages that did not run this time
 * (a partial rerun) are carried over from the previous manifest.
 */
export async function buildManifest(
  ctx: BuildContext,
  managed: Map<string, Managed[]>,
  inventory: Map<string, Record<string, string>>,
  previous: Manifest | null,
): Promise<Manifest> {
  const entries = new Map<string, ManifestEntry>();
  for (const [stage, paths] of managed) {
    for (const item of paths) {
      const entry = entries.has(item.path) ? undefined : describePath(ctx, stage, item);
      if (entry) entries.set(item.path, entry);
    }
  }
  for (const entry of previous?.paths ?? []) {
    if (!managed.has(entry.stage) && !entries.has(entry.path)) entries.set(entry.path, entry);
  }
  const paths = [...entries.values()].sort((a, b) => byKey(a.path, b.path));
  const packages: PackageEntry[] = [...inventory].flatMap(([stage, versions]) => Object.entries(versions).map(([name, version]) => ({ name, version, stage })));
  for (const entry of previous?.packages ?? []) if (!inventory.has(entry.stage)) packages.push(entry);
  packages.sort((a, b) => byKey(a.name, b.name));
  return { manifestVersion: MANIFEST_VERSION, paths, packages };
}

function byKey(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The entry as it is, reached like every managed path (look, lib/machine/safe-path.ts); one a user has since put a link on the way to is left out. */
function describePath(ctx: BuildContext, stage: string, item: Managed): ManifestEntry | undefined {
  let found: Found;
  try {
    found = look(ctx, item.path, { read: !item.secret });
  } catch (error) {
    if (error instanceof UnsafePathError) return undefined;
    throw error;
  }
  const { stats, content, target } = found;
  if (!stats) return { path: item.path, stage, type: "absent" };
  const entry: ManifestEntry = {
    path: item.path,
    stage,
    type: typeName(stats) as ManifestEntry["type"],
    mode: formatMode(stats.mode),
    owner: ctx.accounts.userName(stats.uid),
    group: ctx.accounts.groupName(stats.gid),
  };
  if (target !== null) entry.target = target;
  if (stats.isFile()) {
    if (item.secret) entry.secret = true;
    else entry.sha256 = createHash("sha256").update(content ?? Buffer.alloc(0)).digest("hex");
  }
  return entry;
}

export async function readManifest(file: string): Promise<Manifest | null> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, "utf8")) as Manifest;
    return parsed.manifestVersion === MANIFEST_VERSION ? parsed : null;
  } catch {
    return null;
  }
}
