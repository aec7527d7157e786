import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { deadPid, makeTestRoot } from "../test/support/test-context.ts";
import preflight, { BUILD_LOCK_PATH, NotRootError, requireRoot } from "./preflight.ts";

describe("preflight", () => {
  it("refuses any uid but root in one line that says what to do", () => {
    expect(() => requireRoot(65534)).toThrow(NotRootError);
    expect(() => requireRoot(65534)).toThrow(
      /^build\.ts must run as root, not as uid 65534: run it again as root, e\.g\. with sudo$/,
    );
    expect(() => requireRoot(undefined)).toThrow(NotRootError);
    expect(() => requireRoot(0)).not.toThrow();
    expect(new NotRootError(1000).message).not.toContain("\n");
  });

  it("takes no lock file under --root with --plan: a plan writes nothing there", async () => {
    using root = makeTestRoot({ planOnly: true });
    await preflight.check(root.ctx);
    expect(root.ctx.cleanups).toEqual([]);
    expect(existsSync(path.join(root.dir, BUILD_LOCK_PATH))).toBe(false);
  });

  it("takes the lock under --root for a build, and releases it at the end", async () => {
    using root = makeTestRoot();
    await preflight.check(root.ctx);
    expect(existsSync(path.join(root.dir, BUILD_LOCK_PATH))).toBe(true);
    for (const cleanup of root.ctx.cleanups) await cleanup();
  });

  it("after a killed build, removes its half-made work everywhere at the lock takeover, saying so; a running process's stays", async () => {
    using root = makeTestRoot();
    const log: string[] = [];
    Object.assign(root.ctx.log, { info: (line: string) => log.push(line) });
    const dead = deadPid();
    // The killed build's lock (its pid, no holder), and what it left.
    mkdirSync(path.dirname(path.join(root.dir, BUILD_LOCK_PATH)), { recursive: true });
    writeFileSync(path.join(root.dir, BUILD_LOCK_PATH), `${dead}\n`);
    const left = [
      path.join(tmpdir(), `devvm-t3-health-${dead}-abc`),
      path.join(root.dir, `opt/devvm/node/.22.23.3.tmp-${dead}-xyz`),
      path.join(root.dir, `opt/devvm/npm/@openai+codex/.staging-0.99.0-${dead}`),
      path.join(root.ctx.cacheDir, `sha512/${"a".repeat(128)}.part-${dead}`),
    ];
    const running = path.join(root.dir, `opt/devvm/npm/@openai+codex/.staging-0.99.0-${process.pid}`);
    for (const dir of [...left.slice(0, 3), running]) mkdirSync(dir, { recursive: true });
    mkdirSync(path.dirname(left[3]!), { recursive: true });
    writeFileSync(left[3]!, "half");
    try {
      await preflight.check(root.ctx);
      for (const cleanup of root.ctx.cleanups) await cleanup();
      expect(left.filter((file) => existsSync(file))).toEqual([]);
      expect(existsSync(running)).toBe(true);
      expect(log).toEqual(
        expect.arrayContaining([
          `took over the lock left by pid ${dead}, which is no longer running`,
          expect.stringMatching(/^removed 1 base dir\(s\) of a t3 health check a killed build left in /),
          `removed 1 unfinished Node tree(s) a killed build left in ${root.dir}/opt/devvm/node`,
          `removed 1 unfinished npm install(s) a killed build left in ${root.dir}/opt/devvm/npm/@openai+codex`,
          expect.stringMatching(/^removed 1 partial download a killed build left in /),
        ]),
      );
    } finally {
      for (const file of left) rmSync(file, { recursive: true, force: true });
    }
  });

  it("leaves the sweep to the stages after a build that ended normally: a no-op run reads no more folders", async () => {
    using root = makeTestRoot();
    const stale = path.join(root.dir, `opt/devvm/node/.22.23.3.tmp-${deadPid()}-xyz`);
    mkdirSync(stale, { recursive: true });
    await preflight.check(root.ctx);
    for (const cleanup of root.ctx.cleanups) await cleanup();
    // Left to the node stage, which sweeps where it works.
    expect(existsSync(stale)).toBe(true);
  });
});
