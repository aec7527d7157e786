// Root never acts through a link a user planted (docs/devvm.md, "Promises
// that span all stages"; systemd-tmpfiles refuses such "unsafe path
// transitions", CVE-2018-6954). Every path the builder creates, writes,
// links, re-owns, moves, removes or reads to decide what to do is reached
// by this one walk, a folder at a time, each folder opened by descriptor
// relative to the one before (never by a name someone can swap later):
// - in root's tree (every folder so far root's), a link that root owns in a
//   folder only root can write is followed (/var/run -> /run, a /home that
//   is a link);
// - from the first folder that belongs to a user on, it is that user's
//   tree: no link is followed, and every folder and the final entry belong
//   to that user or to root.
// What is then done in the folder goes through its descriptor
// (/proc/PID/fd/N/NAME), so a name changed after the walk changes nothing.
import {
  closeSync,
  constants,
  fsyncSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  fchownSync,
  fchmodSync,
  type Stats,
} from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { warn } from "../core/context.ts";
import { UserError } from "../core/errors.ts";

const FOLDER = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
// O_NONBLOCK: a FIFO put where a file was expected must not hang the build.
const ENTRY = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const MAX_LINKS = 40;

type Ctx = Pick<BuildContext, "root" | "accounts">;

/** A path in a user's tree that goes through a link they could have planted, or through someone else's folder. */
export class UnsafePathError extends UserError {
  override name = "UnsafePathError";
  constructor(
    readonly path: string,
    readonly problem: string,
    /** The user whose tree it is in (or who owns the link, in root's). */
    readonly user: string,
  ) {
    super(
      `${user}: ${path} ${problem}: not followed, nothing done through it`,
      "the builder acts in a user's home only through folders of theirs that are not links; without --strict this is a warning and the rest of the build goes on",
    );
  }
}

/** A folder opened by the walk, and whose tree it is in. */
export class SafeDir implements Disposable {
  constructor(
    private fd: number,
    /** Its path on the managed machine (under --root, below the root). */
    readonly machinePath: string,
    readonly stats: Stats,
    /** The uid of the user whose tree this is; undefined in root's own. */
    readonly treeOwner: number | undefined,
  ) {}

  /** NAME in this folder, reached through the descriptor; valid for this process and its children. */
  at(name?: string): string {
    return `/proc/${process.pid}/fd/${this.fd}${name ? `/${name}` : ""}`;
  }

  /** fsync of the folder itself: a rename in it survives a crash. */
  sync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A folder by its real path, trusted as given (the builder's own output, a --root): the writers' common ground. */
export function openFolderAsGiven(realPath: string): SafeDir {
  const fd = openSync(realPath, constants.O_RDONLY | constants.O_DIRECTORY);
  const stats = fstatSync(fd);
  // A --root a user owns (a test's temporary folder) is that user's tree from the start.
  return new SafeDir(fd, "/", stats, stats.uid === 0 ? undefined : stats.uid);
}

export interface Walked {
  dir: SafeDir;
  /** The machine paths below dir that do not exist (only without create), outermost first. */
  missing: string[];
}

/**
 * Walks to machineDir. Missing folders are made with create (in root's tree
 * root's, 0755, as `install -d` would; in a user's tree that user's, 0700),
 * else the walk stops at the last folder that exists and names the rest.
 */
export function walkTo(ctx: Ctx, machineDir: string, options: { create?: boolean } = {}): Walked {
  let dir = openFolderAsGiven(ctx.root);
  let names = components(machineDir);
  let links = 0;
  try {
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const here = `/${names.slice(0, i + 1).join("/")}`;
      let stats = lstatOrNull(dir.at(name));
      if (!stats && !options.create)
        return { dir, missing: names.slice(i).map((_, k) => `/${names.slice(0, i + k + 1).join("/")}`) };
      if (!stats) stats = makeFolder(dir, name);
      if (stats.isSymbolicLink()) {
        const target = readlinkSync(dir.at(name));
        if (dir.treeOwner === undefined && stats.uid === 0 && (dir.stats.mode & 0o022) === 0 && ++links <= MAX_LINKS) {
          // Root's own link, in a folder only root writes: walked again from the top, its target in its place.
          names = components(
            path.posix.join(path.posix.resolve(path.posix.dirname(here), target), ...names.slice(i + 1)),
          );
          dir.close();
          dir = openFolderAsGiven(ctx.root);
          i = -1;
          continue;
        }
        throw refusal(ctx, dir, stats, here, `is a link to ${target}`);
      }
      if (!stats.isDirectory()) throw refusal(ctx, dir, stats, here, `is a ${typeName(stats)}, not a folder`);
      const next = openSubfolder(ctx, dir, name, here);
      dir.close();
      dir = next;
    }
    return { dir, missing: [] };
  } catch (error) {
    dir.close();
    throw error;
  }
}

/** The folder that holds machinePath, walked to (and made, with create); throws UnsafePathError. */
export function openParent(
  ctx: Ctx,
  machinePath: string,
  options: { create?: boolean } = {},
): Walked & { name: string } {
  return { ...walkTo(ctx, path.posix.dirname(machinePath), options), name: path.posix.basename(machinePath) };
}

/**
 * The final entry NAME of a walked folder, never followed: null when absent.
 * In a user's tree it must be theirs or root's, and a file of root's there
 * must not be a hard link to one elsewhere (reading it would read that).
 */
export function entryIn(ctx: Ctx, dir: SafeDir, name: string): Stats | null {
  const stats = lstatOrNull(dir.at(name));
  if (!stats || dir.treeOwner === undefined) return stats;
  const here = path.posix.join(dir.machinePath, name);
  if (stats.uid !== 0 && stats.uid !== dir.treeOwner)
    throw new UnsafePathError(
      here,
      `belongs to ${ctx.accounts.userName(stats.uid)}`,
      ctx.accounts.userName(dir.treeOwner),
    );
  if (stats.uid === 0 && !stats.isDirectory() && stats.nlink > 1)
    throw new UnsafePathError(here, "is a hard link to a file of root's", ctx.accounts.userName(dir.treeOwner));
  return stats;
}

/** What is at machinePath, never following it or a planted link on the way: null when it (or a folder above) is absent. */
export function inspect(ctx: Ctx, machinePath: string): Stats | null {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  return missing.length > 0 ? null : entryIn(ctx, dir, name);
}

/** Like inspect, for an entry the builder writes or writes into: in a user's tree a link there is named (UnsafePathError). */
export function inspectForWriting(ctx: Ctx, machinePath: string): Stats | null {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  return missing.length > 0 ? null : refuseLink(ctx, dir, name, entryIn(ctx, dir, name));
}

/** The stats given, unless they are of a link in a user's tree: that link is the user's, named and not followed. */
export function refuseLink(ctx: Ctx, dir: SafeDir, name: string, stats: Stats | null): Stats | null {
  if (!stats?.isSymbolicLink() || dir.treeOwner === undefined) return stats;
  throw new UnsafePathError(
    path.posix.join(dir.machinePath, name),
    `is a link to ${readlinkSync(dir.at(name))}`,
    ctx.accounts.userName(dir.treeOwner),
  );
}

/** The content of a regular file NAME in dir, read without following a link and without blocking on a FIFO; null when it is no regular file. */
export function readEntry(dir: SafeDir, name: string): Buffer | null {
  let fd: number;
  try {
    fd = openSync(dir.at(name), ENTRY);
  } catch (error) {
    if (["ENOENT", "ELOOP", "ENXIO"].includes((error as NodeJS.ErrnoException).code ?? "")) return null;
    throw error;
  }
  try {
    return fstatSync(fd).isFile() ? readFileSync(fd) : null;
  } finally {
    closeSync(fd);
  }
}

/** A user's file read to decide what root does: null when absent or not a regular file; a link there is named (UnsafePathError). */
export function readUserFile(ctx: Ctx, machinePath: string): Buffer | null {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  if (missing.length > 0 || !refuseLink(ctx, dir, name, entryIn(ctx, dir, name))) return null;
  return readEntry(dir, name);
}

/** Sets owner and mode of the existing entry NAME through a descriptor: a link swapped in meanwhile is refused (ELOOP), never followed. */
export function setOwnerAndMode(
  dir: SafeDir,
  name: string,
  owner: { uid: number; gid: number } | undefined,
  mode: number,
  options: { folder?: boolean } = {},
): void {
  let fd: number;
  try {
    fd = openSync(dir.at(name), options.folder ? FOLDER : ENTRY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const here = path.posix.join(dir.machinePath, name);
    // Named by its path, not the descriptor's: a link (ELOOP) or a file (ENOTDIR) is never re-owned in its place.
    if (code === "ELOOP") throw new UserError(`${here} became a link while the builder worked on it; left as it is`);
    if (code === "ENOTDIR") throw new UserError(`${here} is not a folder`, "remove it (or move it aside) by hand");
    throw error;
  }
  try {
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    // After chown, which clears setuid and setgid bits.
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/** Makes folder NAME in dir if it is not there, then gives it owner and mode through its descriptor. */
export function makeFolderIn(
  dir: SafeDir,
  name: string,
  owner: { uid: number; gid: number } | undefined,
  mode: number,
): void {
  try {
    mkdirSync(dir.at(name), { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  // chmod after chown (setOwnerAndMode): mkdir's mode is masked by the umask.
  setOwnerAndMode(dir, name, owner, mode, { folder: true });
}

/** makeFolderIn at a machine path, its parents walked to (they must exist). */
export function ensureFolder(ctx: Ctx, machinePath: string, owner: { uid: number; gid: number }, mode: number): void {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  if (missing.length > 0) throw new UserError(`cannot make ${machinePath}: ${missing[0]} is not there`);
  const stats = entryIn(ctx, dir, name);
  if (stats && !stats.isDirectory())
    throw refusal(ctx, dir, stats, machinePath, `is a ${typeName(stats)}, not a folder`);
  makeFolderIn(dir, name, owner, mode);
}

/** Moves from one walked place to another (rename(2) follows neither name); to must not exist. */
export function moveEntry(ctx: Ctx, from: string, to: string): void {
  const source = openParent(ctx, from);
  using _ = source.dir;
  const target = openParent(ctx, to);
  using __ = target.dir;
  if (source.missing.length > 0 || !entryIn(ctx, source.dir, source.name))
    throw new UserError(`cannot move ${from}: it is not there`);
  if (target.missing.length > 0) throw new UserError(`cannot move ${from} to ${to}: ${target.missing[0]} is not there`);
  if (entryIn(ctx, target.dir, target.name)) throw new UserError(`cannot move ${from} to ${to}: ${to} exists`);
  renameSync(source.dir.at(source.name), target.dir.at(target.name));
}

/**
 * Removes machinePath and, if it is a folder, everything in it, each folder
 * opened by descriptor relative to its parent: a link inside is removed,
 * never followed, and a folder swapped for a link meanwhile is not entered.
 */
export function removeTree(ctx: Ctx, machinePath: string): void {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  if (missing.length === 0 && entryIn(ctx, dir, name)) removeEntry(dir.at(), name);
}

function removeEntry(parent: string, name: string): void {
  const here = `${parent}/${name}`;
  let fd: number;
  try {
    fd = openSync(here, FOLDER);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Not a folder (ENOTDIR), or a link (ELOOP): the name goes, whatever it points at stays.
    if (code === "ENOTDIR" || code === "ELOOP") return unlinkSync(here);
    if (code === "ENOENT") return;
    throw error;
  }
  try {
    const inside = `/proc/${process.pid}/fd/${fd}`;
    for (const child of readdirSync(inside)) removeEntry(inside, child);
  } finally {
    closeSync(fd);
  }
  rmdirSync(here);
}

/** A refused path: a warning naming it, for that user (an error with --strict); the build goes on for everyone else. */
export function reportUnsafe(ctx: Pick<BuildContext, "strict" | "log" | "warnings">, error: UnsafePathError): void {
  if (ctx.strict) throw error;
  warn(ctx, error.message);
}

/** Runs fn; an UnsafePathError it throws is reported (reportUnsafe) and gives undefined. */
export async function unlessUnsafe<T>(
  ctx: Pick<BuildContext, "strict" | "log" | "warnings">,
  fn: () => T | Promise<T>,
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (error) {
    if (!(error instanceof UnsafePathError)) throw error;
    reportUnsafe(ctx, error);
    return undefined;
  }
}

export function typeName(stats: Stats): string {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "folder";
  if (stats.isSymbolicLink()) return "symlink";
  return "special file";
}

// ---- the walk's steps -------------------------------------------------------

function components(machinePath: string): string[] {
  return path.posix
    .normalize(`/${machinePath}`)
    .split("/")
    .filter((c) => c !== "" && c !== ".");
}

function lstatOrNull(file: string): Stats | null {
  try {
    return lstatSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * Why the walk stops at HERE: in a user's tree (or at an entry a user owns)
 * an UnsafePathError for that user, which the callers report and go on; in
 * root's own tree an error that fails the stage, since nobody but root could
 * have made it so.
 */
function refusal(ctx: Ctx, dir: SafeDir, stats: Stats, here: string, problem: string): UserError {
  const uid = dir.treeOwner ?? (stats.uid === 0 ? undefined : stats.uid);
  if (uid !== undefined) return new UnsafePathError(here, problem, ctx.accounts.userName(uid));
  return new UserError(
    `${here} ${problem}`,
    "the builder follows only root's own links in folders only root can write; make it a folder (or move it aside) by hand",
  );
}

function openSubfolder(ctx: Ctx, dir: SafeDir, name: string, here: string): SafeDir {
  let fd: number;
  try {
    fd = openSync(dir.at(name), FOLDER);
  } catch (error) {
    // Swapped for a link or a file since the lstat.
    if (["ELOOP", "ENOTDIR"].includes((error as NodeJS.ErrnoException).code ?? ""))
      throw refusal(ctx, dir, lstatSync(dir.at(name)), here, "changed while it was walked");
    throw error;
  }
  const stats = fstatSync(fd);
  if (dir.treeOwner !== undefined && stats.uid !== 0 && stats.uid !== dir.treeOwner) {
    closeSync(fd);
    throw new UnsafePathError(
      here,
      `belongs to ${ctx.accounts.userName(stats.uid)}`,
      ctx.accounts.userName(dir.treeOwner),
    );
  }
  return new SafeDir(fd, here, stats, dir.treeOwner ?? (stats.uid === 0 ? undefined : stats.uid));
}

/** A missing folder on the walk: in root's tree root's, 0755; in a user's, theirs (with the folder above's group), 0700. */
function makeFolder(dir: SafeDir, name: string): Stats {
  const owner = dir.treeOwner === undefined ? { uid: 0, gid: 0 } : { uid: dir.treeOwner, gid: dir.stats.gid };
  // Not root (a unit test's own temporary root): what it makes is its own anyway.
  makeFolderIn(dir, name, process.getuid?.() === 0 ? owner : undefined, dir.treeOwner === undefined ? 0o755 : 0o700);
  return lstatSync(dir.at(name));
}
