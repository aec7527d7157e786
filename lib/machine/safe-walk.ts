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
// What is then done in the folder goes through its descriptor (safe-dir.ts),
// so a name changed after the walk changes nothing.
import { closeSync, fstatSync, lstatSync, openSync, readlinkSync, type Stats } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import {
  FOLDER,
  lstatSyncOrNull,
  makeFolderIn,
  openFolderAsGiven,
  SafeDir,
  typeName,
  UnsafePathError,
} from "./safe-dir.ts";

const MAX_LINKS = 40;

type Ctx = Pick<BuildContext, "root" | "accounts">;

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
      let stats = lstatSyncOrNull(dir.at(name));
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

// ---- the walk's steps -------------------------------------------------------

function components(machinePath: string): string[] {
  return path.posix
    .normalize(`/${machinePath}`)
    .split("/")
    .filter((c) => c !== "" && c !== ".");
}

/**
 * Why the walk stops at HERE: in a user's tree (or at an entry a user owns)
 * an UnsafePathError for that user, which the callers report and go on; in
 * root's own tree an error that fails the stage, since nobody but root could
 * have made it so.
 */
export function refusal(ctx: Ctx, dir: SafeDir, stats: Stats, here: string, problem: string): UserError {
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
