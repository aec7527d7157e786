// File primitives shared by every stage. A resource says what a path must
// be; checkResource says what would change, applyResource makes it so. A
// path that already matches is never written (its mtime stays); what is
// written lands whole (atomic-write.ts).
import { promises as fs, type Stats } from "node:fs";
import { createTwoFilesPatch } from "diff";
import type { Change } from "../core/change.ts";
import { formatMode } from "../core/change.ts";
import type { BuildContext } from "../core/context.ts";
import { entryIn, makeFolderIn, setOwnerAndMode, typeName } from "./safe-dir.ts";
import { look, unlessUnsafe } from "./safe-path.ts";
import { openParent } from "./safe-walk.ts";
import { replaceSymlinkIn, writeFileIn } from "./atomic-write.ts";
import type { Pending } from "../core/stage.ts";

interface Ownership {
  /** User name; root when absent. */
  owner?: string;
  /** Group name; root when absent. */
  group?: string;
}

export interface FileResource extends Ownership {
  kind: "file";
  path: string;
  content: string | Buffer;
  mode: number;
  /** Redacted in diffs, the report and the manifest. */
  secret?: boolean;
  /** Runs on the finished temporary file; if it throws, the live file is left as it was. */
  validate?: (temporaryFile: string) => Promise<void>;
}

export interface DirResource extends Ownership {
  kind: "dir";
  path: string;
  /** May include the setgid bit (0o2000). */
  mode: number;
}

/** Owned by root unless an owner is given (a link in a user's home is theirs). */
export interface SymlinkResource extends Ownership {
  kind: "symlink";
  path: string;
  target: string;
}

/** Permission bits that must be cleared on a path, when that path exists. */
export interface PermsResource {
  kind: "perms";
  path: string;
  clear: number;
}

export type Resource = FileResource | DirResource | SymlinkResource | PermsResource;

/** A path a stage manages, as the manifest records it. */
export interface Managed {
  path: string;
  secret?: boolean;
}

export function managedBy(resources: Resource[]): Managed[] {
  return resources.map((r) => (r.kind === "file" && r.secret ? { path: r.path, secret: true } : { path: r.path }));
}

/**
 * A stage's check for a list of resources: what would change, and what it
 * manages. A resource whose path goes through a link a user planted is
 * named (a warning; an error with --strict) and left out of both: the rest
 * goes on.
 */
export async function planResources(ctx: BuildContext, resources: Resource[]): Promise<Pending> {
  const changes: Change[] = [];
  const kept: Resource[] = [];
  for (const resource of resources) {
    const found = await unlessUnsafe(ctx, () => checkResource(ctx, resource));
    if (!found) continue;
    changes.push(...found);
    kept.push(resource);
  }
  return { changes, managed: managedBy(kept) };
}

export async function checkResources(ctx: BuildContext, resources: Resource[]): Promise<Change[]> {
  return (await planResources(ctx, resources)).changes;
}

export async function applyResources(ctx: BuildContext, resources: Resource[]): Promise<Change[]> {
  const changes: Change[] = [];
  for (const resource of resources)
    changes.push(...((await unlessUnsafe(ctx, () => applyResource(ctx, resource))) ?? []));
  return changes;
}

export async function checkResource(ctx: BuildContext, resource: Resource): Promise<Change[]> {
  switch (resource.kind) {
    case "file":
      return checkFile(ctx, resource);
    case "dir":
      return checkDir(ctx, resource);
    case "symlink":
      return checkSymlink(ctx, resource);
    case "perms":
      return checkPerms(ctx, resource);
  }
}

export async function applyResource(ctx: BuildContext, resource: Resource): Promise<Change[]> {
  const changes = await checkResource(ctx, resource);
  if (changes.length === 0) return changes;
  // Missing folders above are made (docs/devvm.md lesson: `install -m` did not
  // create /etc/t3-serve and a fresh box failed there).
  const { dir, name } = openParent(ctx, resource.path, { create: true });
  using _ = dir;
  switch (resource.kind) {
    case "file": {
      const owner = ids(ctx, resource);
      const now = entryIn(ctx, dir, name);
      // A file with other names (hard links) is never re-owned in place: those names would change too.
      if (changes.some((c) => c.kind === "create" || c.kind === "content") || (now && now.nlink > 1)) {
        await writeFileIn(dir, name, resource.content, { mode: resource.mode, ...owner, validate: resource.validate });
      } else setOwnerAndMode(dir, name, owner, resource.mode);
      break;
    }
    case "dir":
      makeFolderIn(dir, name, ids(ctx, resource), resource.mode);
      break;
    case "symlink":
      await replaceSymlinkIn(dir, name, resource.target, resource.owner ? ids(ctx, resource) : undefined);
      break;
    case "perms": {
      const stats = entryIn(ctx, dir, name)!;
      setOwnerAndMode(dir, name, undefined, stats.mode & 0o7777 & ~resource.clear);
      break;
    }
  }
  return changes;
}

// ---- checks -------------------------------------------------------------
// Every path is reached through lib/machine/safe-walk.ts's walk: a link a user
// planted on the way (or, in their tree, in place of the entry) is named
// (UnsafePathError), never followed.

async function checkFile(ctx: BuildContext, want: FileResource): Promise<Change[]> {
  const { stats, missing, content: current } = look(ctx, want.path, { read: true, refuseLink: true });
  const wantContent = Buffer.from(want.content);
  if (!stats) {
    return [
      ...missing.map(createDir),
      { kind: "create", path: want.path, what: "file", diff: contentDiff(want, Buffer.alloc(0), wantContent) },
    ];
  }
  const changes: Change[] = [];
  if (!current || !current.equals(wantContent)) {
    const diff = current ? contentDiff(want, current, wantContent) : `${want.path} is a ${typeName(stats)}, not a file`;
    changes.push({ kind: "content", path: want.path, diff });
  }
  changes.push(...modeAndOwnerChanges(ctx, want.path, stats, want.mode, want));
  return changes;
}

async function checkDir(ctx: BuildContext, want: DirResource): Promise<Change[]> {
  const { stats, missing } = look(ctx, want.path, { refuseLink: true });
  if (!stats) return [...missing.map(createDir), { kind: "create", path: want.path, what: "dir" }];
  if (!stats.isDirectory())
    return [
      {
        kind: "content",
        path: want.path,
        diff: `${want.path} is a ${typeName(stats)}, not a folder: remove it by hand`,
      },
    ];
  return modeAndOwnerChanges(ctx, want.path, stats, want.mode, want);
}

async function checkSymlink(ctx: BuildContext, want: SymlinkResource): Promise<Change[]> {
  const { stats, missing, target } = look(ctx, want.path);
  if (!stats) return [...missing.map(createDir), { kind: "create", path: want.path, what: "symlink" }];
  if (!stats.isSymbolicLink() || target === null)
    return [{ kind: "symlink", path: want.path, from: `(a ${typeName(stats)})`, to: want.target }];
  if (target !== want.target) return [{ kind: "symlink", path: want.path, from: target, to: want.target }];
  return want.owner ? ownerChanges(ctx, want.path, stats, want) : [];
}

async function checkPerms(ctx: BuildContext, want: PermsResource): Promise<Change[]> {
  const { stats } = look(ctx, want.path, { refuseLink: true });
  if (!stats || (stats.mode & want.clear) === 0) return [];
  return [{ kind: "mode", path: want.path, from: formatMode(stats.mode), to: formatMode(stats.mode & ~want.clear) }];
}

/** Mode and owner drift of an existing path whose content is managed some other way. */
export async function checkAttributes(
  ctx: BuildContext,
  machinePath: string,
  mode: number,
  own: Ownership = {},
): Promise<Change[]> {
  const { stats } = look(ctx, machinePath);
  return stats ? modeAndOwnerChanges(ctx, machinePath, stats, mode, own) : [];
}

export async function fixAttributes(
  ctx: BuildContext,
  machinePath: string,
  mode: number,
  own: Ownership = {},
): Promise<void> {
  const { dir, name } = openParent(ctx, machinePath);
  using _ = dir;
  setOwnerAndMode(dir, name, ids(ctx, own), mode);
}

function modeAndOwnerChanges(
  ctx: BuildContext,
  machinePath: string,
  stats: Stats,
  mode: number,
  own: Ownership,
): Change[] {
  const changes: Change[] = [];
  if ((stats.mode & 0o7777) !== mode)
    changes.push({ kind: "mode", path: machinePath, from: formatMode(stats.mode), to: formatMode(mode) });
  return [...changes, ...ownerChanges(ctx, machinePath, stats, own)];
}

function ownerChanges(ctx: BuildContext, machinePath: string, stats: Stats, own: Ownership): Change[] {
  const { uid, gid } = ids(ctx, own);
  if (stats.uid === uid && stats.gid === gid) return [];
  const names = `${ctx.accounts.userName(stats.uid)}:${ctx.accounts.groupName(stats.gid)}`;
  return [{ kind: "owner", path: machinePath, from: names, to: `${own.owner ?? "root"}:${own.group ?? "root"}` }];
}

const createDir = (machinePath: string): Change => ({ kind: "create", path: machinePath, what: "dir" });

function contentDiff(want: FileResource, before: Buffer, after: Buffer): string {
  if (want.secret) return `${want.path}: secret content changes (not shown)`;
  if (!isText(before) || !isText(after))
    return `${want.path}: binary content changes (${before.length} -> ${after.length} bytes)`;
  return createTwoFilesPatch(want.path, want.path, before.toString("utf8"), after.toString("utf8"), "", "", {
    context: 3,
  });
}

function isText(content: Buffer): boolean {
  return !content.includes(0) && Buffer.from(content.toString("utf8"), "utf8").equals(content);
}

// ---- helpers ------------------------------------------------------------

function ids(ctx: BuildContext, own: Ownership): { uid: number; gid: number } {
  return { uid: ctx.accounts.uid(own.owner ?? "root"), gid: ctx.accounts.gid(own.group ?? "root") };
}

export async function lstatOrNull(file: string): Promise<Stats | null> {
  try {
    return await fs.lstat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

// The writers have a file of their own; the stages reach them here, with the resources.
export { replaceSymlink, writeFileAtomic } from "./atomic-write.ts";
