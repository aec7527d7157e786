import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { dpkgLockHolder, waitForDpkgLock } from "./dpkg.ts";
import { makeTestRoot } from "./test-context.ts";

/** Holds a lock on `file` the way another program would, until killed. */
async function holdLock(file: string) {
  // Its own group: the sleep inherits the locked file, so both are killed.
  const holder = spawn("flock", [file, "sleep", "30"], { stdio: "ignore", detached: true });
  for (let i = 0; i < 50 && !dpkgLockHolder([file]); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  return holder;
}

describe("dpkg's lock", () => {
  it("names the process that holds it, from the kernel's table of locks", async () => {
    using root = makeTestRoot();
    const file = path.join(root.dir, "lock-frontend");
    writeFileSync(file, "");
    expect(dpkgLockHolder([file])).toBeNull();
    const holder = await holdLock(file);
    try {
      expect(dpkgLockHolder([file])).toBe(`pid ${holder.pid} (flock ${file} sleep 30)`);
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
    }
  });

  it("waits for it with one message, and gives up after the bound naming the holder", async () => {
    using root = makeTestRoot();
    const file = path.join(root.dir, "lock");
    writeFileSync(file, "");
    const holder = await holdLock(file);
    const lines: string[] = [];
    const log = { info: (line: string) => lines.push(line), debug: () => {} };
    try {
      await expect(waitForDpkgLock({ log }, 1500, [file])).rejects.toThrow(`dpkg's lock is held by pid ${holder.pid} (flock ${file} sleep 30) and was not released within 2 s`);
      expect(lines).toEqual([`waiting (at most 2 s) for dpkg's lock, held by pid ${holder.pid} (flock ${file} sleep 30)`]);
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
    }
  });

  it("goes on as soon as the holder is gone", async () => {
    using root = makeTestRoot();
    const file = path.join(root.dir, "lock");
    writeFileSync(file, "");
    const holder = await holdLock(file);
    setTimeout(() => process.kill(-holder.pid!, "SIGKILL"), 300);
    const log = { info: () => {}, debug: () => {} };
    const started = Date.now();
    await waitForDpkgLock({ log }, 10_000, [file]);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
