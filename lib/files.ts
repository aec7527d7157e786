// File primitives shared by every stage. A resource says what a path must
// be; checkResource says what would change, applyResource makes it so. A
// path that already matches is never written (its mtime stays).
import { randomBytes } from "node:crypto";
import { constants, promises as fs, type Stats } from "node:fs";
import path from "node:path";
import { createTwoFilesPatch } from "diff";
import type { Change } from "./change.ts";
import { formatMode } from "./change.ts";
import type { BuildContext } from "./context.ts";
import { hostPath } from "./context.ts";
import type { Pending } from "./stage.ts";

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

export interface SymlinkResource {
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

/** A stage's check for a list of resources: what would change, and what it manages. */
export async function planResources(ctx: BuildContext, resources: Resource[]): Promise<Pending> {
  return { changes: await checkResources(ctx, resources), managed: managedBy(resources) };
}

export async function checkResources(ctx: BuildContext, resources: Resource[]): Promise<Change[]> {
  const changes: Change[] = [];
  for (const resource of resources) changes.push(...(await checkResource(ctx, resource)));
  return changes;
}

export async function applyResources(ctx: BuildContext, resources: Resource[]): Promise<Change[]> {
  const changes: Change[] = [];
  for (const resource of resources) changes.push(...(await applyResource(ctx, resource)));
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
  const real = hostPath(ctx, resource.path);
  await ensureParents(ctx, path.dirname(real));
  switch (resource.kind) {
    case "file": {
      const { uid, gid } = ids(ctx, resource);
      if (changes.some((c) => c.kind === "create" || c.kind === "content")) {
        await writeFileAtomic(real, resource.content, { mode: resource.mode, uid, gid, validate: resource.validate });
      } else {
        await fs.chown(real, uid, gid);
        await fs.chmod(real, resource.mode);
      }
      break;
    }
    case "dir": {
      const { uid, gid } = ids(ctx, resource);
      await fs.mkdir(real, { recursive: true, mode: 0o700 });
      await fs.chown(real, uid, gid);
      // chmod after chown: mkdir's mode is masked by the umask.
      await fs.chmod(real, resource.mode);
      break;
    }
    case "symlink":
      await replaceSymlink(real, resource.target);
      break;
    case "perms": {
      const stats = await fs.lstat(real);
      await fs.chmod(real, stats.mode & 0o7777 & ~resource.clear);
      break;
    }
  }
  return changes;
}

// ---- checks -------------------------------------------------------------

async function checkFile(ctx: BuildContext, want: FileResource): Promise<Change[]> {
  const real = hostPath(ctx, want.path);
  const stats = await lstatOrNull(real);
  const wantContent = Buffer.from(want.content);
  if (!stats) {
    return [...(await missingParents(ctx, want.path)), { kind: "create", path: want.path, what: "file", diff: contentDiff(want, Buffer.alloc(0), wantContent) }];
  }
  const changes: Change[] = [];
  const current = stats.isFile() ? await fs.readFile(real) : null;
  if (!current || !current.equals(wantContent)) {
    const diff = current ? contentDiff(want, current, wantContent) : `${want.path} is a ${typeName(stats)}, not a file`;
    changes.push({ kind: "content", path: want.path, diff });
  }
  changes.push(...modeAndOwnerChanges(ctx, want.path, stats, want.mode, want));
  return changes;
}

async function checkDir(ctx: BuildContext, want: DirResource): Promise<Change[]> {
  const stats = await lstatOrNull(hostPath(ctx, want.path));
  if (!stats) return [...(await missingParents(ctx, want.path)), { kind: "create", path: want.path, what: "dir" }];
  if (!stats.isDirectory()) return [{ kind: "content", path: want.path, diff: `${want.path} is a ${typeName(stats)}, not a folder: remove it by hand` }];
  return modeAndOwnerChanges(ctx, want.path, stats, want.mode, want);
}

async function checkSymlink(ctx: BuildContext, want: SymlinkResource): Promise<Change[]> {
  const real = hostPath(ctx, want.path);
  const stats = await lstatOrNull(real);
  if (!stats) return [...(await missingParents(ctx, want.path)), { kind: "create", path: want.path, what: "symlink" }];
  if (!stats.isSymbolicLink()) return [{ kind: "symlink", path: want.path, from: `(a ${typeName(stats)})`, to: want.target }];
  const target = await fs.readlink(real);
  return target === want.target ? [] : [{ kind: "symlink", path: want.path, from: target, to: want.target }];
}

async function checkPerms(ctx: BuildContext, want: PermsResource): Promise<Change[]> {
  const stats = await lstatOrNull(hostPath(ctx, want.path));
  if (!stats || (stats.mode & want.clear) === 0) return [];
  return [{ kind: "mode", path: want.path, from: formatMode(stats.mode), to: formatMode(stats.mode & ~want.clear) }];
}

/** Mode and owner drift of an existing path whose content is managed some other way. */
export async function checkAttributes(ctx: BuildContext, machinePath: string, mode: number, own: Ownership = {}): Promise<Change[]> {
  const stats = await lstatOrNull(hostPath(ctx, machinePath));
  return stats ? modeAndOwnerChanges(ctx, machinePath, stats, mode, own) : [];
}

export async function fixAttributes(ctx: BuildContext, machinePath: string, mode: number, own: Ownership = {}): Promise<void> {
  const { uid, gid } = ids(ctx, own);
  await fs.chown(hostPath(ctx, machinePath), uid, gid);
  await fs.chmod(hostPath(ctx, machinePath), mode);
}

function modeAndOwnerChanges(ctx: BuildContext, machinePath: string, stats: Stats, mode: number, own: Ownership): Change[] {
  const changes: Change[] = [];
  if ((stats.mode & 0o7777) !== mode) changes.push({ kind: "mode", path: machinePath, from: formatMode(stats.mode), to: formatMode(mode) });
  const { uid, gid } = ids(ctx, own);
  if (stats.uid !== uid || stats.gid !== gid) {
    const names = `${ctx.accounts.userName(stats.uid)}:${ctx.accounts.groupName(stats.gid)}`;
    changes.push({ kind: "owner", path: machinePath, from: names, to: `${own.owner ?? "root"}:${own.group ?? "root"}` });
  }
  return changes;
}

async function missingParents(ctx: BuildContext, machinePath: string): Promise<Change[]> {
  const missing: Change[] = [];
  for (let dir = path.dirname(machinePath); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (await lstatOrNull(hostPath(ctx, dir))) break;
    missing.unshift({ kind: "create", path: dir, what: "dir" });
  }
  return missing;
}

function contentDiff(want: FileResource, before: Buffer, after: Buffer): string {
  if (want.secret) return `${want.path}: secret content changes (not shown)`;
  if (!isText(before) || !isText(after)) return `${want.path}: binary content changes (${before.length} -> ${after.length} bytes)`;
  return createTwoFilesPatch(want.path, want.path, before.toString("utf8"), after.toString("utf8"), "", "", { context: 3 });
}

function isText(content: Buffer): boolean {
  return !content.includes(0) && Buffer.from(content.toString("utf8"), "utf8").equals(content);
}

// ---- writers ------------------------------------------------------------

export interface AtomicWriteOptions {
  mode: number;
  uid: number;
  gid: number;
  validate?: ((temporaryFile: string) => Promise<void>) | undefined;
}

const TEMP_MARK = ".devvm-tmp-";

/**
 * Writes a file so that a reader (or a crash) sees the old content or the new,
 * never half of it: a temporary file in the same folder, created 0600, given
 * its owner and mode, synced, validated, then renamed over the live file.
 */
export async function writeFileAtomic(file: string, content: string | Buffer, options: AtomicWriteOptions): Promise<void> {
  const dir = path.dirname(file);
  await removeStaleTemporaries(file);
  // The leading dot keeps the temporary out of include dirs such as /etc/sudoers.d.
  const temporary = path.join(dir, `.${path.basename(file)}${TEMP_MARK}${process.pid}-${randomBytes(4).toString("hex")}`);
  const handle = await fs.open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    try {
      await handle.writeFile(content);
      await handle.chown(options.uid, options.gid);
      await handle.chmod(options.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.validate) await options.validate(temporary);
    await fs.rename(temporary, file);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
  await syncDirectory(dir);
}

/** Leftovers of a build that was killed between writing and renaming. */
async function removeStaleTemporaries(file: string): Promise<void> {
  const prefix = `.${path.basename(file)}${TEMP_MARK}`;
  const names = await fs.readdir(path.dirname(file)).catch(() => [] as string[]);
  await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => fs.rm(path.join(path.dirname(file), n), { force: true })));
}

/** Points a symlink at a target by renaming a new link over the old one. */
export async function replaceSymlink(link: string, target: string): Promise<void> {
  const temporary = `${link}${TEMP_MARK}${process.pid}-${randomBytes(4).toString("hex")}`;
  await fs.symlink(target, temporary);
  try {
    await fs.rename(temporary, link);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}

async function ensureParents(ctx: BuildContext, realDir: string): Promise<void> {
  // Missing parents are created root-owned 0755 (docs/devvm.md lesson: `install -m`
  // did not create /etc/t3-serve and a fresh box failed there).
  if (await lstatOrNull(realDir)) return;
  await ensureParents(ctx, path.dirname(realDir));
  await fs.mkdir(realDir, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e;
  });
  await fs.chmod(realDir, 0o755);
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
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

export function typeName(stats: Stats): string {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "folder";
  if (stats.isSymbolicLink()) return "symlink";
  return "special file";
}
