// One build at a time per machine. The build lock is a kernel flock on a file that
// also holds the holder's pid: the kernel drops it when the holder dies, so
// a lock left by a killed build is simply taken over, and a live one names
// its pid. Node has no flock(2); flock(1) locks the open file description it
// inherits from us, which stays locked after flock(1) exits, until we close it.
import { spawnSync } from "node:child_process";
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import path from "node:path";
import { BuildRunningError, UserError } from "./errors.ts";

export interface BuildLock {
  path: string;
  /** The pid found in a lock whose holder had died, if any. */
  takenOverFrom?: number;
  release(): void;
}

export function takeBuildLock(lockPath: string): BuildLock {
  mkdirSync(path.dirname(lockPath), { recursive: true, mode: 0o755 });
  const fd = openSync(lockPath, "a+", 0o644);
  const result = spawnSync("flock", ["--nonblock", "--exclusive", "3"], { stdio: ["ignore", "ignore", "pipe", fd] });
  if (result.error) {
    closeSync(fd);
    throw new UserError(`cannot run flock(1) to take the build lock: ${result.error.message}`, "install util-linux");
  }
  const previous = Number.parseInt(readFileSync(lockPath, "utf8").trim(), 10) || undefined;
  if (result.status !== 0) {
    closeSync(fd);
    if (previous === undefined)
      throw new UserError(
        `cannot take the build lock ${lockPath}: ${result.stderr.toString().trim() || "flock failed"}`,
      );
    throw new BuildRunningError(previous, lockPath);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let released = false;
  return {
    path: lockPath,
    ...(previous !== undefined && previous !== process.pid ? { takenOverFrom: previous } : {}),
    release() {
      if (released) return;
      released = true;
      ftruncateSync(fd, 0);
      closeSync(fd);
    },
  };
}

/**
 * Whether this process holds the build lock at lockPath. The file names its
 * holder from the moment the lock is taken to its release; a pid left by a
 * killed build names this process only by pid reuse, and then no other
 * build holds the lock either (a holder names itself), which is what the
 * question is for: may this build write what only the holder writes.
 */
export function holdsBuildLock(lockPath: string): boolean {
  try {
    return Number.parseInt(readFileSync(lockPath, "utf8").trim(), 10) === process.pid;
  } catch {
    return false;
  }
}
