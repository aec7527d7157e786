// Writes that a reader, or a crash, sees whole or not at all: a file is
// written beside its live name and renamed over it, a link likewise. Each
// works in a folder opened by the safe walk (or trusted as given).
import { randomBytes } from "node:crypto";
import { constants, promises as fs, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { openFolderAsGiven, type SafeDir } from "./safe-dir.ts";

export interface AtomicWriteOptions {
  mode: number;
  uid: number;
  gid: number;
  validate?: ((temporaryFile: string) => Promise<void>) | undefined;
}

const TEMP_MARK = ".devvm-tmp-";

/** writeFileIn for a file by its real path, its folder trusted as given (the builder's own output, a binary in /usr/local/bin). */
export async function writeFileAtomic(
  file: string,
  content: string | Buffer,
  options: AtomicWriteOptions,
): Promise<void> {
  using dir = openFolderAsGiven(path.dirname(file));
  await writeFileIn(dir, path.basename(file), content, options);
}

/**
 * Writes NAME in a walked folder so that a reader (or a crash) sees the old
 * content or the new, never half of it: a temporary file in the same folder,
 * created 0600 (never through a name planted there: O_EXCL), given its owner
 * and mode, synced, validated, then renamed over the live name.
 */
export async function writeFileIn(
  dir: SafeDir,
  name: string,
  content: string | Buffer,
  options: AtomicWriteOptions,
): Promise<void> {
  removeStaleTemporaries(dir, name);
  // The leading dot keeps the temporary out of include dirs such as /etc/sudoers.d.
  const temporary = `.${name}${TEMP_MARK}${process.pid}-${randomBytes(4).toString("hex")}`;
  const handle = await fs.open(
    dir.at(temporary),
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    try {
      await handle.writeFile(content);
      await handle.chown(options.uid, options.gid);
      await handle.chmod(options.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.validate) await options.validate(dir.at(temporary));
    await fs.rename(dir.at(temporary), dir.at(name));
  } catch (error) {
    await fs.rm(dir.at(temporary), { force: true });
    throw error;
  }
  dir.sync();
}

/** Leftovers of a build that was killed between writing and renaming (their names are removed, never followed). */
function removeStaleTemporaries(dir: SafeDir, name: string): void {
  const prefix = `.${name}${TEMP_MARK}`;
  for (const entry of readdirSync(dir.at())) if (entry.startsWith(prefix)) rmSync(dir.at(entry), { force: true });
}

/** Points a symlink at a target by renaming a new link over the old one. */
export async function replaceSymlink(link: string, target: string): Promise<void> {
  using dir = openFolderAsGiven(path.dirname(link));
  await replaceSymlinkIn(dir, path.basename(link), target, undefined);
}

export async function replaceSymlinkIn(
  dir: SafeDir,
  name: string,
  target: string,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  const temporary = `${name}${TEMP_MARK}${process.pid}-${randomBytes(4).toString("hex")}`;
  await fs.symlink(target, dir.at(temporary));
  try {
    // A link in a user's home is theirs, like the rest of it.
    if (owner) await fs.lchown(dir.at(temporary), owner.uid, owner.gid);
    await fs.rename(dir.at(temporary), dir.at(name));
  } catch (error) {
    await fs.rm(dir.at(temporary), { force: true });
    throw error;
  }
}
