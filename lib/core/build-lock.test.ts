import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BuildRunningError } from "./errors.ts";
import { holdsBuildLock, takeBuildLock } from "./build-lock.ts";

const lockModule = JSON.stringify(new URL("./build-lock.ts", import.meta.url).href);

/** Another build: a process that takes the lock, says so, then waits. */
function holder(lockPath: string) {
  const script = `import { takeBuildLock } from ${lockModule};
    takeBuildLock(${JSON.stringify(lockPath)}); console.log("locked"); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const locked = new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
  return { child, locked };
}

describe("the build lock", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "devvm-lock-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("is taken, records the pid, and can be taken again after release", () => {
    const lockPath = path.join(dir, "run/lock/build.lock");
    const lock = takeBuildLock(lockPath);
    expect(readFileSync(lockPath, "utf8")).toBe(`${process.pid}\n`);
    lock.release();
    const again = takeBuildLock(lockPath);
    expect(again.takenOverFrom).toBeUndefined();
    again.release();
  });

  it("says whether this process holds it: from its taking to its release, not while another build does", async () => {
    const lockPath = path.join(dir, "build.lock");
    expect(holdsBuildLock(lockPath)).toBe(false);
    const lock = takeBuildLock(lockPath);
    expect(holdsBuildLock(lockPath)).toBe(true);
    lock.release();
    expect(holdsBuildLock(lockPath)).toBe(false);
    const other = holder(lockPath);
    try {
      await other.locked;
      expect(holdsBuildLock(lockPath)).toBe(false);
    } finally {
      other.child.kill("SIGKILL");
    }
  });

  it("refuses a second build while one runs, naming the running one's pid", async () => {
    const lockPath = path.join(dir, "build.lock");
    const other = holder(lockPath);
    try {
      await other.locked;
      let error: unknown;
      try {
        takeBuildLock(lockPath);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(BuildRunningError);
      expect((error as BuildRunningError).pid).toBe(other.child.pid);
      expect((error as Error).message).toContain(`pid ${other.child.pid}`);
    } finally {
      other.child.kill("SIGKILL");
    }
  });

  it("takes over a lock left by a killed build", async () => {
    const lockPath = path.join(dir, "build.lock");
    const other = holder(lockPath);
    await other.locked;
    const exited = new Promise((resolve) => other.child.once("exit", resolve));
    other.child.kill("SIGKILL");
    await exited;
    const lock = takeBuildLock(lockPath);
    expect(lock.takenOverFrom).toBe(other.child.pid);
    expect(readFileSync(lockPath, "utf8")).toBe(`${process.pid}\n`);
    lock.release();
  });

  it("is released when its holder exits without releasing", () => {
    const lockPath = path.join(dir, "build.lock");
    const script = `import { takeBuildLock } from ${lockModule}; takeBuildLock(${JSON.stringify(lockPath)});`;
    expect(spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]).status).toBe(0);
    const lock = takeBuildLock(lockPath);
    expect(lock.takenOverFrom).toBeGreaterThan(0);
    lock.release();
  });
});
