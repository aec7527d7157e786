// A folder the safe walk (safe-walk.ts) has opened, held by its descriptor,
// and what is done to an entry in it through that descriptor
// (/proc/PID/fd/N/NAME): looked at without following it, read, re-owned,
// made. A name changed after the walk changes nothing here.
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  type Stats,
} from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";

export const FOLDER = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
// O_NONBLOCK: a FIFO put where a file was expected must not hang the build.
const ENTRY = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

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

/**
 * The final entry NAME of a walked folder, never followed: null when absent.
 * In a user's tree it must be theirs or root's, and a file of root's there
 * must not be a hard link to one elsewhere (reading it would read that).
 */
export function entryIn(ctx: Ctx, dir: SafeDir, name: string): Stats | null {
  const stats = lstatSyncOrNull(dir.at(name));
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

export function typeName(stats: Stats): string {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "folder";
  if (stats.isSymbolicLink()) return "symlink";
  return "special file";
}

/** lstat, or null when nothing is there. */
export function lstatSyncOrNull(file: string): Stats | null {
  try {
    return lstatSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}
