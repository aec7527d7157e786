import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSettings, settingVariables } from "../lib/inputs/settings.ts";
import type { Stage } from "../lib/core/stage.ts";
import { makeTestRootWithAccounts } from "../test/support/test-context.ts";
import { readPendingRestarts } from "../lib/machine/systemd.ts";
import { startGoProxyStandIn, type GoProxyStandIn } from "../test/support/stand-ins/go-proxy.ts";
import serviceHelpersStage from "./service-helpers.ts";

const serviceHelpers: Stage = serviceHelpersStage;
const FIXTURE = path.resolve(import.meta.dirname, "../test/support/fixtures/t3-dispatch");
const SOURCE = settingVariables.t3DispatchSource;
// The fixture's go.mod says go 1.22, as the real source's does.
const goMinor = Number(/go1\.(\d+)/.exec(spawnSync("go", ["version"], { encoding: "utf8" }).stdout ?? "")?.[1] ?? 0);
const hasGo = goMinor >= 22;
/** The scratch folders of this process's go builds (stages/service-helpers.ts). */
const scratchFolders = () => readdirSync(tmpdir()).filter((name) => name.startsWith(`devvm-go-${process.pid}-`));

/** A test root with its own accounts, so groupadd --root works on it. */
const rootWithAccounts = (settings: Record<string, string>, strict = false) =>
  makeTestRootWithAccounts({ settings: readSettings(settings), strict });

describe("service-helpers", () => {
  // t3-dispatch's fixture needs a module, fetched from the Go module proxy stand-in.
  let goProxy: GoProxyStandIn;
  beforeAll(async () => {
    goProxy = await startGoProxyStandIn();
  });
  afterAll(() => goProxy?.stop());

  it.skipIf(!hasGo)(
    "installs the helpers, creates the account, builds t3-dispatch once and records its restart",
    { timeout: 120_000 },
    async () => {
      // A machine path: under --root, the source is in the root too.
      using root = rootWithAccounts({ [SOURCE]: "/src/t3-dispatch", DEVVM_GOPROXY: goProxy.url });
      cpSync(FIXTURE, path.join(root.dir, "src/t3-dispatch"), { recursive: true });
      goProxy.clearRequests();
      const check = await serviceHelpers.check(root.ctx);
      if ("skip" in check) throw new Error(check.skip);
      await serviceHelpers.apply(root.ctx, check);

      for (const name of ["t3-mint", "t3-state-backup", "tmux-persist"]) {
        const file = path.join(root.dir, "usr/local/bin", name);
        expect(statSync(file).mode & 0o7777).toBe(0o755);
        expect(readFileSync(file, "utf8")).toBe(
          readFileSync(path.join(root.ctx.repoDir, "files/service", name), "utf8"),
        );
      }
      expect(readFileSync(path.join(root.dir, "etc/passwd"), "utf8")).toMatch(
        /^t3-dispatch:x:\d+:\d+::\/nonexistent:\/usr\/sbin\/nologin$/m,
      );
      const binary = path.join(root.dir, "usr/local/bin/t3-dispatch");
      expect(statSync(binary).mode & 0o7777).toBe(0o755);
      expect(readFileSync(binary).subarray(1, 4).toString()).toBe("ELF");
      expect(await readPendingRestarts(root.ctx)).toEqual(["t3-dispatch.service"]);
      expect(goProxy.requests().map((r) => `${r.path} ${r.status}`)).toContain(
        "/example.invalid/%21org/signon/@v/v1.0.0.zip 200",
      );
      expect(scratchFolders()).toEqual([]);

      const mtime = statSync(binary).mtimeMs;
      expect(await serviceHelpers.check(root.ctx)).toMatchObject({ changes: [] });
      expect(statSync(binary).mtimeMs).toBe(mtime);
    },
  );

  it.skipIf(!hasGo)(
    "refuses a tampered module, naming the go.sum mismatch, and installs nothing",
    { timeout: 120_000 },
    async () => {
      using root = rootWithAccounts({ [SOURCE]: "/src/t3-dispatch", DEVVM_GOPROXY: goProxy.url });
      cpSync(FIXTURE, path.join(root.dir, "src/t3-dispatch"), { recursive: true });
      const check = await serviceHelpers.check(root.ctx);
      if ("skip" in check) throw new Error(check.skip);
      goProxy.serveTampered(true);
      try {
        await expect(serviceHelpers.apply(root.ctx, check)).rejects.toMatchObject({
          name: "UserError",
          message: expect.stringMatching(
            /^go build refused a module of .*\/src\/t3-dispatch: checksum mismatch\nverifying example.invalid\/Org\/signon@v1.0.0: checksum mismatch\n\tdownloaded: h1:.*\n\tgo.sum: +h1:.*\nSECURITY ERROR$/,
          ),
          hint: expect.stringContaining(`DEVVM_GOPROXY=${goProxy.url} served is not the one`),
        });
      } finally {
        goProxy.serveTampered(false);
      }
      expect(existsSync(path.join(root.dir, "usr/local/bin/t3-dispatch"))).toBe(false);
      expect(await readPendingRestarts(root.ctx)).toEqual([]);
      expect(scratchFolders()).toEqual([]);
    },
  );

  it("keeps an existing t3-dispatch, fixing only its mode", async () => {
    using root = rootWithAccounts({ [SOURCE]: "/nowhere" });
    writeFileSync(
      path.join(root.dir, "etc/passwd"),
      "root:x:0:0:root:/root:/bin/bash\nt3-dispatch:x:999:999::/nonexistent:/usr/sbin/nologin\n",
    );
    mkdirSync(path.join(root.dir, "usr/local/bin"), { recursive: true });
    writeFileSync(path.join(root.dir, "usr/local/bin/t3-dispatch"), "#!/bin/sh\n", { mode: 0o700 });
    const check = await serviceHelpers.check(root.ctx);
    if ("skip" in check) throw new Error(check.skip);
    expect(check.changes).toContainEqual({
      kind: "mode",
      path: "/usr/local/bin/t3-dispatch",
      from: "0700",
      to: "0755",
    });
    await serviceHelpers.apply(root.ctx, check);
    expect(statSync(path.join(root.dir, "usr/local/bin/t3-dispatch")).mode & 0o7777).toBe(0o755);
    expect(await readPendingRestarts(root.ctx)).toEqual([]);
  });

  it("warns when t3-dispatch is neither built nor buildable; fails with --strict", async () => {
    const lines: string[] = [];
    using root = rootWithAccounts({ [SOURCE]: "/nowhere" });
    Object.assign(root.ctx, { log: { info: (m: string) => lines.push(m), debug: () => {} } });
    const check = await serviceHelpers.check(root.ctx);
    expect(lines.join("\n")).toMatch(
      /warning: \/usr\/local\/bin\/t3-dispatch is not built and its source \/nowhere has no go.mod/,
    );
    if ("skip" in check) throw new Error(check.skip);
    await serviceHelpers.apply(root.ctx, check);
    expect(existsSync(path.join(root.dir, "usr/local/bin/t3-dispatch"))).toBe(false);

    using strict = rootWithAccounts({ [SOURCE]: "/nowhere" }, true);
    await expect(serviceHelpers.check(strict.ctx)).rejects.toThrow(/not built/);
  });
});

describe("t3-watchdog's rule (files/service/t3-watchdog --decide FAILS UPTIME RESTARTS)", () => {
  const program = path.resolve(import.meta.dirname, "../files/service/t3-watchdog");
  const decide = (fails: number, uptime: number, restarts: number, env: Record<string, string> = {}) =>
    spawnSync("sh", [program, "--decide", String(fails), String(uptime), String(restarts)], {
      encoding: "utf8",
      env: { ...process.env, ...env },
    }).stdout.trim();

  it("restarts only after 3 failed probes in a row, more than 120 s up, and fewer than 3 restarts in 30 minutes", () => {
    expect(decide(2, 3600, 0)).toBe("wait");
    expect(decide(3, 120, 0)).toBe("wait");
    expect(decide(3, 121, 0)).toBe("restart");
    expect(decide(7, 121, 2)).toBe("restart");
    expect(decide(3, 121, 3)).toBe("exhausted");
    // A young instance is never called exhausted: it may still be starting.
    expect(decide(3, 30, 3)).toBe("wait");
  });

  it("takes a shorter grace only from its setting (the container test's)", () => {
    expect(decide(3, 6, 0, { T3_WATCHDOG_GRACE: "5" })).toBe("restart");
    expect(decide(3, 5, 0, { T3_WATCHDOG_GRACE: "5" })).toBe("wait");
  });
});
