// What the builder does at a machine path (looks, reads, makes, moves,
// removes), each reached by the safe walk (safe-walk.ts): root never acts
// through a link a user planted. A link refused in a user's tree is an
// UnsafePathError, which unlessUnsafe turns into a warning for that user.
import { closeSync, openSync, readdirSync, readlinkSync, renameSync, rmdirSync, unlinkSync, type Stats } from "node:fs";
import type { BuildContext } from "../core/context.ts";
import { warn } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { entryIn, FOLDER, makeFolderIn, readEntry, refuseLink, typeName, UnsafePathError } from "./safe-dir.ts";
import { openParent, refusal } from "./safe-walk.ts";

export { typeName, UnsafePathError };

type Ctx = Pick<BuildContext, "root" | "accounts">;

export interface Found {
  /** null when absent. */
  stats: Stats | null;
  /** The folders above it that do not exist, outermost first. */
  missing: string[];
  /** A regular file's content, when asked. */
  content: Buffer | null;
  /** A link's target. */
  target: string | null;
}

/**
 * What is at a resource's path, never following it. Where the builder keeps a
 * file or folder in a user's tree (refuseLink), a link there is the user's:
 * named, not replaced.
 */
export function look(ctx: Ctx, machinePath: string, options: { read?: boolean; refuseLink?: boolean } = {}): Found {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  if (missing.length > 0) return { stats: null, missing, content: null, target: null };
  const stats = options.refuseLink ? refuseLink(ctx, dir, name, entryIn(ctx, dir, name)) : entryIn(ctx, dir, name);
  return {
    stats,
    missing: [],
    content: options.read && stats?.isFile() ? readEntry(dir, name) : null,
    target: stats?.isSymbolicLink() ? readlinkSync(dir.at(name)) : null,
  };
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

/** A user's file read to decide what root does: null when absent or not a regular file; a link there is named (UnsafePathError). */
export function readUserFile(ctx: Ctx, machinePath: string): Buffer | null {
  const { dir, missing, name } = openParent(ctx, machinePath);
  using _ = dir;
  if (missing.length > 0 || !refuseLink(ctx, dir, name, entryIn(ctx, dir, name))) return null;
  return readEntry(dir, name);
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
