import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readSettings } from "../lib/inputs/settings.ts";
import type { Stage } from "../lib/core/stage.ts";
import { makeTestRoot } from "../test/support/test-context.ts";
import builderInstallStage from "./builder-install.ts";

const builderInstall: Stage = builderInstallStage;

describe("builder-install", () => {
  it(
    "installs a bundle that runs from its folder with the inputs, files and settings, then changes nothing",
    { timeout: 60_000 },
    async () => {
      using root = makeTestRoot({
        settings: readSettings({
          VAULT_TOKEN: "hvs.never-in-settings-env",
          DEVVM_NPM_REGISTRY: "http://127.0.0.1:4873/",
        }),
      });
      const check = await builderInstall.check(root.ctx);
      if ("skip" in check) throw new Error(check.skip);
      await builderInstall.apply(root.ctx, check);
      const installed = path.join(root.dir, "opt/devvm/builder");
      expect(readFileSync(path.join(installed, "pins.json"), "utf8")).toBe(
        readFileSync(path.join(root.ctx.repoDir, "pins.json"), "utf8"),
      );
      expect(readFileSync(path.join(installed, "files/service/units/devvm-t3-pin.timer"), "utf8")).toContain(
        "Persistent=false",
      );
      const settingsEnv = readFileSync(path.join(installed, "settings.env"), "utf8");
      expect(settingsEnv).toMatch(/^DEVVM_NPM_REGISTRY="http:\/\/127.0.0.1:4873"$/m);
      expect(settingsEnv).toMatch(/^DEVVM_ADMIN_HOME="\/home\/wizard"$/m);
      expect(settingsEnv).not.toMatch(/VAULT_TOKEN|never-in-settings-env/);

      // As the timers run it: the installed bundle, which finds its own folder.
      const list = spawnSync(process.execPath, [path.join(installed, "dist/devvm.mjs"), "--list"], {
        encoding: "utf8",
        cwd: "/",
      });
      expect(list.status, list.stderr).toBe(0);
      expect(list.stdout).toMatch(/^preflight\s/m);

      expect(await builderInstall.check(root.ctx)).toMatchObject({ changes: [] });
    },
  );

  it(
    "records what the bundle was made from, and still notices a bundle changed by hand",
    { timeout: 60_000 },
    async () => {
      using root = makeTestRoot();
      const first = await builderInstall.check(root.ctx);
      if ("skip" in first) throw new Error(first.skip);
      await builderInstall.apply(root.ctx, first);
      const record = JSON.parse(readFileSync(path.join(root.dir, "var/lib/devvm/builder-bundle.json"), "utf8"));
      expect(record.sources).toEqual(
        expect.arrayContaining(["build.ts", "stages/builder-install.ts", "node_modules/esbuild/package.json"]),
      );

      const started = performance.now();
      expect(await builderInstall.check(root.ctx)).toMatchObject({ changes: [] });
      process.stderr.write(`no-op check with the record: ${Math.round(performance.now() - started)} ms\n`);

      appendFileSync(path.join(root.dir, "opt/devvm/builder/dist/devvm.mjs"), "// edited by hand\n");
      expect(await builderInstall.check(root.ctx)).toMatchObject({
        changes: [{ kind: "content", path: "/opt/devvm/builder/dist/devvm.mjs" }],
      });
    },
  );

  it("removes files an earlier version installed that the repository no longer has", { timeout: 60_000 }, async () => {
    using root = makeTestRoot();
    const first = await builderInstall.check(root.ctx);
    if ("skip" in first) throw new Error(first.skip);
    await builderInstall.apply(root.ctx, first);
    const stale = path.join(root.dir, "opt/devvm/builder/files/old-helper.sh");
    writeFileSync(stale, "#!/bin/sh\n");
    const check = await builderInstall.check(root.ctx);
    expect(check).toMatchObject({
      changes: [{ kind: "action", description: "remove /opt/devvm/builder/files/old-helper.sh" }],
    });
    if ("skip" in check) throw new Error(check.skip);
    await builderInstall.apply(root.ctx, check);
    expect(existsSync(stale)).toBe(false);
  });
});
