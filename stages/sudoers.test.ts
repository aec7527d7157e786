import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Stage } from "../lib/core/stage.ts";
import { makeTestRoot } from "../test/support/test-context.ts";
import sudoersStage from "./sudoers.ts";

const sudoers: Stage = sudoersStage;
const hasVisudo = spawnSync("visudo", ["--version"]).status === 0;

/** A repo folder whose files/ has only the sudoers source, with the given text. */
function repoWith(dir: string, text: string): string {
  const repo = path.join(dir, "repo");
  mkdirSync(path.join(repo, "files/service"), { recursive: true });
  writeFileSync(path.join(repo, "files/service/sudoers-t3-autopair"), text);
  return repo;
}

describe.skipIf(!hasVisudo)("sudoers", () => {
  it("installs the drop-in 0440 after visudo accepts it", async () => {
    using root = makeTestRoot();
    const check = await sudoers.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    await sudoers.apply(root.ctx, check);
    const file = path.join(root.dir, "etc/sudoers.d/t3-autopair");
    expect(statSync(file).mode & 0o7777).toBe(0o440);
    expect(readFileSync(file, "utf8")).toMatch(/^t3-dispatch ALL=\(root\) NOPASSWD: \/usr\/local\/bin\/t3-mint$/m);
    expect(await sudoers.check(root.ctx)).toMatchObject({ changes: [] });
  });

  it("never installs a drop-in visudo refuses, leaves the live one and fails with visudo's message", async () => {
    using root = makeTestRoot();
    const good = await sudoers.check(root.ctx);
    if ("skip" in good) throw new Error(good.skip);
    await sudoers.apply(root.ctx, good);
    const live = readFileSync(path.join(root.dir, "etc/sudoers.d/t3-autopair"), "utf8");

    Object.assign(root.ctx, {
      repoDir: repoWith(root.dir, "t3-dispatch ALL=(root) NOPASSWD /usr/local/bin/t3-mint\n"),
    });
    const bad = await sudoers.check(root.ctx);
    if ("skip" in bad) throw new Error(bad.skip);
    await expect(sudoers.apply(root.ctx, bad)).rejects.toThrow(
      /visudo refused the new \/etc\/sudoers.d\/t3-autopair; the live file was left as it was:\n.*syntax error/,
    );
    expect(readFileSync(path.join(root.dir, "etc/sudoers.d/t3-autopair"), "utf8")).toBe(live);
    expect(readdirSync(path.join(root.dir, "etc/sudoers.d"))).toEqual(["t3-autopair"]);
  });
});
