import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { Background } from "../core/background.ts";
import { BIN_DIR } from "../machine/layout.ts";
import { cliPrefix, prepareGlobalCli } from "./npm-global.ts";
import {
  checkThenInstall,
  CODEX,
  INTEGRITY,
  NODE,
  OTHER_INTEGRITY,
  useNpmTestbed,
} from "../../test/support/fixtures/npm-cli.ts";

describe("a CLI prepared in the background (while apt runs)", () => {
  const bed = useNpmTestbed();

  const pin = { version: "0.169.0", integrity: INTEGRITY };
  const withNode = (work: (tree: string) => Promise<unknown>) =>
    work(path.join(bed.root.dir, `/opt/devvm/node/${NODE}`)) as never;

  it("stages the install at nice 19 with nothing live; the stage's apply takes it, runs no second npm, and says it done", async () => {
    const background = new Background();
    const lines: string[] = [];
    const ctx = { ...bed.root.ctx, background, log: { info: (m: string) => lines.push(m), debug: () => {} } };
    vi.stubEnv("FAKE_NPM_NICE_LOG", path.join(bed.root.dir, "nice.log"));
    await prepareGlobalCli(ctx, CODEX, pin, withNode)!.prepared();
    expect(existsSync(path.join(bed.root.dir, BIN_DIR, "codex"))).toBe(false);
    expect(bed.versionsOf(CODEX.name)).toEqual([`.staging-0.169.0-${process.pid}`]);
    expect(readFileSync(path.join(bed.root.dir, "nice.log"), "utf8").trim()).toBe("19");
    expect(lines).toEqual(["npm install @openai/codex@0.169.0"]);

    expect(await checkThenInstall(ctx, CODEX, pin)).toEqual([
      { kind: "package", name: CODEX.name, from: null, to: "0.169.0" },
    ]);
    expect(bed.installs()).toHaveLength(1);
    expect(bed.activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.169.0")}/bin/codex`);
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.169.0"]);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^npm install @openai\/codex@0\.169\.0: done in \d+\.\d s$/),
    ]);
    await background.settle(ctx.log);
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.169.0"]);
  });

  it("removes a staged install that no apply took (its stage did not run) when the build ends", async () => {
    const background = new Background();
    await prepareGlobalCli({ ...bed.root.ctx, background }, CODEX, pin, withNode)!.prepared();
    await background.settle(bed.root.ctx.log);
    expect(bed.versionsOf(CODEX.name)).toEqual([]);
    expect(existsSync(path.join(bed.root.dir, BIN_DIR, "codex"))).toBe(false);
  });

  it("prepares nothing when the pinned version is active", async () => {
    await checkThenInstall(bed.root.ctx, CODEX, pin);
    const background = new Background();
    await prepareGlobalCli({ ...bed.root.ctx, background }, CODEX, pin, withNode)!.prepared();
    expect(bed.installs()).toHaveLength(1);
  });

  it("leaves a failure to the stage's apply, which tries again and reports its own error, installing nothing", async () => {
    const background = new Background();
    const ctx = { ...bed.root.ctx, background };
    const tampered = { ...pin, integrity: OTHER_INTEGRITY };
    await prepareGlobalCli(ctx, CODEX, tampered, withNode)!.prepared();
    await expect(checkThenInstall(ctx, CODEX, tampered)).rejects.toThrow(
      `pins.json has integrity ${OTHER_INTEGRITY}, the registry serves ${INTEGRITY}`,
    );
    // Asked once in the background, once by the apply.
    expect(bed.registry.requests).toEqual(["/@openai%2fcodex/0.169.0", "/@openai%2fcodex/0.169.0"]);
    expect(bed.installs()).toEqual([]);
    expect(existsSync(path.join(bed.root.dir, BIN_DIR, "codex"))).toBe(false);
  });
});
