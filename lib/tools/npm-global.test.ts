import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { UserError } from "../core/errors.ts";
import { BIN_DIR } from "../machine/layout.ts";
import { checkGlobalCli, cliPrefix, installedVersion } from "./npm-global.ts";
import { progressIntervals } from "../core/progress.ts";
import {
  CLAUDE,
  checkThenInstall,
  CODEX,
  fakeInstall,
  INTEGRITY,
  link,
  OTHER_INTEGRITY,
  testRoot,
  useNpmTestbed,
} from "../../test/support/fixtures/npm-cli.ts";

describe("checkGlobalCli", () => {
  it("reports nothing when the pinned version is active, and manages the links", async () => {
    using root = testRoot();
    fakeInstall(root, CODEX.name, "0.169.0", "codex");
    link(root, `${BIN_DIR}/codex`, `${cliPrefix(CODEX.name, "0.169.0")}/bin/codex`);
    expect(await checkGlobalCli(root.ctx, CODEX, { version: "0.169.0" })).toEqual({
      changes: [],
      managed: [{ path: "/usr/local/bin/codex" }],
      plan: { before: { version: "0.169.0", prefix: cliPrefix(CODEX.name, "0.169.0") }, changes: [] },
    });
    expect(cliPrefix(CODEX.name, "0.169.0")).toBe("/opt/devvm/npm/@openai+codex/0.169.0");
  });

  it("reports a package change when another version is active", async () => {
    using root = testRoot();
    fakeInstall(root, CODEX.name, "0.168.0", "codex");
    link(root, `${BIN_DIR}/codex`, `${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect((await checkGlobalCli(root.ctx, CODEX, { version: "0.169.0" })).changes).toEqual([
      { kind: "package", name: CODEX.name, from: "0.168.0", to: "0.169.0" },
    ]);
  });
});

describe("installGlobalCli", () => {
  const bed = useNpmTestbed();

  it("installs into the version's prefix with only the allowed scripts, then links the bins", async () => {
    const changes = await checkThenInstall(bed.root.ctx, CLAUDE, { version: "2.1.332", integrity: INTEGRITY });
    expect(changes).toEqual([{ kind: "package", name: CLAUDE.name, from: null, to: "2.1.332" }]);
    expect(bed.activeTarget("claude")).toBe("/opt/devvm/npm/@anthropic-ai+claude-code/2.1.332/bin/claude");
    expect(await installedVersion(bed.root.ctx, CLAUDE.name, "claude")).toBe("2.1.332");
    const [install] = bed.installs();
    expect(install).toContain("--allow-scripts=@anthropic-ai/claude-code");
    expect(install).toContain("--strict-allow-scripts");
    expect(install).toContain("@anthropic-ai/claude-code@2.1.332");
    // Without DEVVM_NPM_REGISTRY, npm's own configuration decides, and the pin is checked there.
    expect(install).not.toContain("--registry");
    expect(bed.registry.requests).toEqual(["/@anthropic-ai%2fclaude-code/2.1.332"]);
    expect(bed.versionsOf(CLAUDE.name)).toEqual(["2.1.332"]);
  });

  it("passes the configured registry to npm", async () => {
    bed.root.ctx.settings.npmRegistry = bed.registry.url;
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY });
    const [install] = bed.installs();
    expect(install!.slice(install!.indexOf("--registry"), install!.indexOf("--registry") + 2)).toEqual([
      "--registry",
      bed.registry.url,
    ]);
    expect(install!.some((a) => a.startsWith("--allow-scripts"))).toBe(false);
  });

  it("does nothing, and runs no npm and asks no registry, when the pinned version is active", async () => {
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY });
    const calls = bed.npmCalls().length;
    const requests = bed.registry.requests.length;
    expect(await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY })).toEqual([]);
    expect(bed.npmCalls().length).toBe(calls);
    expect(bed.registry.requests.length).toBe(requests);
  });

  it("installs nothing when the registry's integrity differs from the pin, and names both", async () => {
    const error = await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: OTHER_INTEGRITY }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toContain(OTHER_INTEGRITY);
    expect((error as Error).message).toContain(INTEGRITY);
    expect(bed.installs()).toEqual([]);
    expect(existsSync(path.join(bed.root.dir, BIN_DIR, "codex"))).toBe(false);
  });

  it("says how long npm has run while it runs, and how long it took", async () => {
    const saved = progressIntervals.heartbeatMs;
    progressIntervals.heartbeatMs = 100;
    vi.stubEnv("FAKE_NPM_SLEEP_MS", "450");
    const lines: string[] = [];
    Object.assign(bed.root.ctx.log, { info: (m: string) => lines.push(m) });
    try {
      await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY });
    } finally {
      progressIntervals.heartbeatMs = saved;
    }
    expect(lines[0]).toBe("npm install @openai/codex@0.169.0");
    expect(lines.slice(1, -1).length).toBeGreaterThanOrEqual(2);
    for (const line of lines.slice(1, -1)) expect(line).toMatch(/^npm install @openai\/codex@0\.169\.0: \d+\.\d s$/);
    expect(lines.at(-1)).toMatch(/^npm install @openai\/codex@0\.169\.0: done in \d+\.\d s$/);
  });

  it("keeps the old version active when npm fails, and leaves no half install", async () => {
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    vi.stubEnv("FAKE_NPM_FAIL", "1");
    await expect(checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY })).rejects.toThrow(
      /exited with 1:\nnpm error code E500/,
    );
    expect(bed.activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.168.0"]);
  });

  it("keeps the old version active and removes the new one when verification fails", async () => {
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    const verify = vi.fn(async (prefix: string) => {
      expect(existsSync(path.join(prefix, "bin/codex"))).toBe(true);
      throw new UserError("unhealthy");
    });
    await expect(
      checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify }),
    ).rejects.toThrow("unhealthy");
    expect(verify).toHaveBeenCalledWith(path.join(bed.root.dir, cliPrefix(CODEX.name, "0.169.0")));
    expect(bed.activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.168.0"]);
  });

  it("runs beforeSwitch after verify, only when the version changes; throwing keeps the old version active and the verified install", async () => {
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    const calls: string[] = [];
    const verify = vi.fn(async () => void calls.push(`verify, active ${bed.activeTarget("codex")}`));
    let fail = true;
    const beforeSwitch = vi.fn(async () => {
      calls.push(`beforeSwitch, active ${bed.activeTarget("codex")}`);
      if (fail) throw new UserError("no backup");
    });
    await expect(
      checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify, beforeSwitch }),
    ).rejects.toThrow("no backup");
    const old = `${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`;
    expect(calls).toEqual([`verify, active ${old}`, `beforeSwitch, active ${old}`]);
    expect(bed.activeTarget("codex")).toBe(old);
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.168.0", "0.169.0"]);

    // The next try reuses the install (no npm), verifies it again, and switches.
    const installsBefore = bed.installs().length;
    fail = false;
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify, beforeSwitch });
    expect(bed.installs().length).toBe(installsBefore);
    expect(verify).toHaveBeenCalledTimes(2);
    expect(bed.activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.169.0")}/bin/codex`);
    // Nothing changes version: not called.
    await checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify, beforeSwitch });
    expect(beforeSwitch).toHaveBeenCalledTimes(2);
  });

  it("keeps the previous version for a rollback, prunes older ones, and rolls back without npm", async () => {
    for (const version of ["0.167.0", "0.168.0", "0.169.0"])
      await checkThenInstall(bed.root.ctx, CODEX, { version, integrity: INTEGRITY });
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.168.0", "0.169.0"]);
    const calls = bed.installs().length;
    const changes = await checkThenInstall(bed.root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    expect(changes).toEqual([{ kind: "package", name: CODEX.name, from: "0.169.0", to: "0.168.0" }]);
    expect(bed.installs().length).toBe(calls);
    expect(bed.activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect(bed.versionsOf(CODEX.name)).toEqual(["0.168.0", "0.169.0"]);
  });

  it("refuses a package whose commands differ from the stage's, switching nothing", async () => {
    const error = await checkThenInstall(
      bed.root.ctx,
      { name: "@openai/codex", bins: ["codex", "codex-exec"] },
      { version: "0.169.0", integrity: INTEGRITY },
    ).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/provides the commands \[codex\], the stage links \[codex, codex-exec\]/);
    expect(existsSync(path.join(bed.root.dir, BIN_DIR, "codex"))).toBe(false);
    expect(bed.versionsOf(CODEX.name)).toEqual([]);
  });

  it("installs nothing without a pinned integrity", async () => {
    await expect(checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0" })).rejects.toThrow(
      "pins.json has no integrity for @openai/codex@0.169.0",
    );
    expect(bed.installs()).toEqual([]);
  });

  it("says which stage to run first when the pinned Node is missing", async () => {
    (bed.root.ctx.inputs.pins.node as { version: string }).version = "22.99.0";
    await expect(checkThenInstall(bed.root.ctx, CODEX, { version: "0.169.0" })).rejects.toThrow(
      /pinned Node 22\.99\.0 is not installed/,
    );
  });
});
