import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestRoot } from "../lib/test-context.ts";
import preflight, { LOCK_PATH, NotRootError, requireRoot } from "./preflight.ts";

describe("preflight", () => {
  it("refuses any uid but root in one line that says what to do", () => {
    expect(() => requireRoot(65534)).toThrow(NotRootError);
    expect(() => requireRoot(65534)).toThrow(/^build\.ts must run as root, not as uid 65534: run it again as root, e\.g\. with sudo$/);
    expect(() => requireRoot(undefined)).toThrow(NotRootError);
    expect(() => requireRoot(0)).not.toThrow();
    expect(new NotRootError(1000).message).not.toContain("\n");
  });

  it("takes no lock file under --root with --plan: a plan writes nothing there", async () => {
    using root = makeTestRoot({ planOnly: true });
    await preflight.check(root.ctx);
    expect(root.ctx.cleanups).toEqual([]);
    expect(existsSync(path.join(root.dir, LOCK_PATH))).toBe(false);
  });

  it("takes the lock under --root for a build, and releases it at the end", async () => {
    using root = makeTestRoot();
    await preflight.check(root.ctx);
    expect(existsSync(path.join(root.dir, LOCK_PATH))).toBe(true);
    for (const cleanup of root.ctx.cleanups) await cleanup();
  });
});
