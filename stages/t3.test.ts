import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { UserError } from "../lib/core/errors.ts";
import type { Inputs } from "../lib/inputs/index.ts";
import { nodeBinary, npmCli } from "../lib/machine/layout.ts";
import { makeTestRoot, type TestRoot } from "../test/support/test-context.ts";
import claudeCode from "./claude-code.ts";
import codex from "./codex.ts";
import { isSkip, type Stage } from "../lib/core/stage.ts";
import t3Stage, { checkT3 } from "./t3.ts";

const NODE = "22.23.3";
const INTEGRITY = `sha512-${"A".repeat(86)}==`;
// Through the Stage contract, as the runner calls it.
const t3: Stage = t3Stage;
const T3_SOURCE = fileURLToPath(new URL("../test/support/fixtures/t3/bin/t3.js", import.meta.url));

// Installs the t3 stand-in of test/support/fixtures/t3 into --prefix; 0.0.27 is the
// bad nightly whose pairing route was renamed.
const FAKE_NPM = String.raw`
const fs = require("node:fs"), path = require("node:path");
const args = process.argv.slice(2);
const prefix = args[args.indexOf("--prefix") + 1];
const version = args.find((a) => a.startsWith("t3@")).slice(3);
const dir = path.join(prefix, "lib/node_modules/t3");
fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
const sessionRoutes = version === "0.0.27" ? ["/api/auth/pair-session"] : ["/api/auth/browser-session", "/api/auth/bootstrap"];
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "t3", version, type: "module", bin: { t3: "bin/t3.js" }, t3Fixture: { sessionRoutes } }));
fs.copyFileSync(process.env.T3_SOURCE, path.join(dir, "bin/t3.js"));
fs.chmodSync(path.join(dir, "bin/t3.js"), 0o755);
fs.mkdirSync(path.join(prefix, "bin"), { recursive: true });
fs.symlinkSync("../lib/node_modules/t3/bin/t3.js", path.join(prefix, "bin/t3"));
`;

// Stands in for files/service/t3-state-backup: records its arguments and
// where /usr/local/bin/t3 pointed when it ran; fails for $FAKE_BACKUP_FAIL.
const FAKE_BACKUP = String.raw`
printf '%s, t3 -> %s\n' "$*" "$(readlink "$FAKE_ROOT/usr/local/bin/t3")" >> "$FAKE_ROOT/backups.log"
case " $* " in *" $FAKE_BACKUP_FAIL "*)
  echo "Error: unable to open database /home/$FAKE_BACKUP_FAIL/.t3/userdata/state.sqlite" >&2
  echo "t3-state-backup: backup of $FAKE_BACKUP_FAIL failed (the copy exited with 1)" >&2
  exit 1 ;;
esac
`;

describe("the t3 stage", () => {
  let root: TestRoot;
  let registry: Server;
  /** check's plan, as the runner hands it to apply; a skip fails the test. */
  const planned = async () => {
    const check = await checkT3(root.ctx);
    if (isSkip(check)) throw new Error(`skipped: ${check.skip}`);
    return check;
  };
  const pin = (version: string) => {
    (root.ctx.inputs.pins.npm as { t3: object }).t3 = { version, integrity: INTEGRITY, approved: "test" };
  };

  beforeEach(async () => {
    registry = createServer((_req, res) =>
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ dist: { integrity: INTEGRITY } })),
    );
    await new Promise<void>((resolve) => registry.listen(0, "127.0.0.1", resolve));
    root = makeTestRoot({ inputs: { pins: { node: { version: NODE }, npm: {} } } as unknown as Inputs });
    root.ctx.settings.npmRegistry = `http://127.0.0.1:${(registry.address() as { port: number }).port}`;
    mkdirSync(path.dirname(path.join(root.dir, nodeBinary(NODE))), { recursive: true });
    symlinkSync(process.execPath, path.join(root.dir, nodeBinary(NODE)));
    mkdirSync(path.dirname(path.join(root.dir, npmCli(NODE))), { recursive: true });
    writeFileSync(path.join(root.dir, npmCli(NODE)), FAKE_NPM);
    vi.stubEnv("T3_SOURCE", T3_SOURCE);
  });
  afterEach(async () => {
    vi.unstubAllEnvs();
    root[Symbol.dispose]();
    await new Promise((resolve) => registry.close(resolve));
  });

  it("is skipped under --root, as are claude-code and codex", async () => {
    for (const stage of [t3, claudeCode, codex]) {
      expect(await stage.check(root.ctx)).toEqual({
        skip: "installing npm packages needs the pinned Node running on the machine itself, not under --root",
      });
    }
  });

  it("switches to a version that passes its health check, and says why running instances are not restarted here", async () => {
    const info: string[] = [];
    Object.assign(root.ctx.log, { info: (m: string) => info.push(m) });
    pin("0.0.26");
    expect(await t3.apply(root.ctx, await planned())).toEqual([
      { kind: "package", name: "t3", from: null, to: "0.0.26" },
    ]);
    expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.26/bin/t3");
    expect(await t3.inventory?.(root.ctx)).toEqual({ "npm:t3": "0.0.26" });
    // Under --root nothing runs; on a booted box the instances stage restarts idle instances.
    expect(info).toEqual([
      "npm install t3@0.0.26",
      expect.stringMatching(/^npm install t3@0\.0\.26: done in \d+\.\d s$/),
      expect.stringMatching(/^running t3-serve@ instances: not started: /),
    ]);
  });

  it("keeps the version before when the new one fails its health check, naming the check and what it saw", async () => {
    pin("0.0.26");
    await t3.apply(root.ctx, await planned());
    pin("0.0.27");
    const error = (await t3.apply(root.ctx, await planned()).catch((e: unknown) => e)) as Error & {
      hint?: string;
    };
    expect(error.message).toBe(
      "t3 0.0.27 failed its health check (browser session): POST /api/auth/browser-session answered 404, then POST /api/auth/bootstrap answered 404; no t3_session cookie; t3 0.0.26 stays active",
    );
    expect(error.hint).toContain("/opt/devvm/npm/t3/0.0.27 was removed");
    expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.26/bin/t3");
    expect(readdirSync(path.join(root.dir, "opt/devvm/npm/t3"))).toEqual(["0.0.26"]);
    expect(existsSync(path.join(root.dir, "opt/devvm/npm/t3/0.0.26/bin/t3"))).toBe(true);
  });

  describe("before a version change", () => {
    let repo: string;
    const backupsLog = () =>
      existsSync(path.join(root.dir, "backups.log"))
        ? readFileSync(path.join(root.dir, "backups.log"), "utf8").trim().split("\n")
        : [];

    beforeEach(() => {
      // Three accounts; alice and bob have a t3 database, carol has none.
      mkdirSync(path.join(root.dir, "etc"), { recursive: true });
      writeFileSync(
        path.join(root.dir, "etc/passwd"),
        ["alice", "bob", "carol"].map((u, i) => `${u}:x:${1001 + i}:${1001 + i}::/home/${u}:/bin/zsh\n`).join(""),
      );
      for (const user of ["alice", "bob"]) {
        mkdirSync(path.join(root.dir, `home/${user}/.t3/userdata`), { recursive: true });
        writeFileSync(path.join(root.dir, `home/${user}/.t3/userdata/state.sqlite`), "SQLite format 3\0");
      }
      repo = mkdtempSync(path.join(tmpdir(), "devvm-repo-"));
      mkdirSync(path.join(repo, "files/service"), { recursive: true });
      writeFileSync(path.join(repo, "files/service/t3-state-backup"), FAKE_BACKUP);
      Object.assign(root.ctx, { repoDir: repo });
      vi.stubEnv("FAKE_ROOT", root.dir);
      vi.stubEnv("FAKE_BACKUP_FAIL", "nobody");
    });
    afterEach(() => rmSync(repo, { recursive: true, force: true }));

    it("copies every t3 database while the version before is still the one linked, only when the version changes", async () => {
      pin("0.0.26");
      await t3.apply(root.ctx, await planned());
      // A first install migrates nothing: no copies.
      expect(backupsLog()).toEqual([]);

      pin("0.0.28");
      expect(await t3.apply(root.ctx, await planned())).toEqual([
        {
          kind: "action",
          description: "copy alice's t3 state to /var/backups/t3-state/alice/state-prebump-0.0.26-0.0.28.sqlite",
        },
        {
          kind: "action",
          description: "copy bob's t3 state to /var/backups/t3-state/bob/state-prebump-0.0.26-0.0.28.sqlite",
        },
        { kind: "package", name: "t3", from: "0.0.26", to: "0.0.28" },
      ]);
      expect(backupsLog()).toEqual([
        "--prebump 0.0.26 0.0.28 alice, t3 -> /opt/devvm/npm/t3/0.0.26/bin/t3",
        "--prebump 0.0.26 0.0.28 bob, t3 -> /opt/devvm/npm/t3/0.0.26/bin/t3",
      ]);
      expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.28/bin/t3");

      // The version stays: nothing to copy.
      expect(await t3.apply(root.ctx, await planned())).toEqual([]);
      expect(backupsLog()).toHaveLength(2);
    });

    it("keeps the version before when a copy fails, after trying every user, and names the user; the next build switches", async () => {
      pin("0.0.26");
      await t3.apply(root.ctx, await planned());
      pin("0.0.28");
      vi.stubEnv("FAKE_BACKUP_FAIL", "alice");
      const error = await t3.apply(root.ctx, await planned()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UserError);
      expect((error as Error).message).toBe(
        "the t3 state of alice could not be copied before t3 0.0.28, so t3 0.0.26 stays active:\n" +
          "alice: Error: unable to open database /home/alice/.t3/userdata/state.sqlite; t3-state-backup: backup of alice failed (the copy exited with 1)",
      );
      expect(backupsLog().map((l) => l.split(", ")[0])).toEqual([
        "--prebump 0.0.26 0.0.28 alice",
        "--prebump 0.0.26 0.0.28 bob",
      ]);
      expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.26/bin/t3");
      // The healthy install stays for the next try; only the links decide what runs.
      expect(readdirSync(path.join(root.dir, "opt/devvm/npm/t3")).sort()).toEqual(["0.0.26", "0.0.28"]);

      vi.stubEnv("FAKE_BACKUP_FAIL", "nobody");
      await t3.apply(root.ctx, await planned());
      expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.28/bin/t3");
      expect(
        backupsLog()
          .slice(2)
          .map((l) => l.split(", ")[1]),
      ).toEqual(["t3 -> /opt/devvm/npm/t3/0.0.26/bin/t3", "t3 -> /opt/devvm/npm/t3/0.0.26/bin/t3"]);
    });
  });
  describe("the gate", () => {
    const state = (file: string) => path.join(root.dir, file);

    it("refuses to move below the newest t3 that has run here, naming both versions and the lock that adopts it; nothing changes", async () => {
      pin("0.0.28");
      await t3.apply(root.ctx, await planned());
      expect(readFileSync(state("var/lib/devvm/t3-newest-run"), "utf8")).toBe("0.0.28\n");
      pin("0.0.26");
      const error = (await checkT3(root.ctx).catch((e: unknown) => e)) as UserError;
      expect(error).toBeInstanceOf(UserError);
      expect(error.message).toBe(
        "t3 0.0.26 (pins.json) is older than t3 0.0.28, which has already run on this box and may have migrated every state.sqlite forward; t3 migrates forward only, so t3 stays at the version it runs",
      );
      expect(error.hint).toContain("`build.ts lock --update t3@0.0.28`");
      expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.28/bin/t3");
    });

    it("counts the live box's global npm t3 as having run, and the record even once the active link is older", async () => {
      mkdirSync(state("usr/lib/node_modules/t3"), { recursive: true });
      writeFileSync(state("usr/lib/node_modules/t3/package.json"), '{"name":"t3","version":"0.0.30-nightly.20260801"}');
      pin("0.0.28");
      await expect(checkT3(root.ctx)).rejects.toThrow(
        /^t3 0\.0\.28 \(pins\.json\) is older than t3 0\.0\.30-nightly\.20260801,/,
      );
      rmSync(state("usr/lib/node_modules/t3"), { recursive: true });
      pin("0.0.26");
      await t3.apply(root.ctx, await planned());
      mkdirSync(state("var/lib/devvm"), { recursive: true });
      writeFileSync(state("var/lib/devvm/t3-newest-run"), "0.0.27\n");
      pin("0.0.26");
      expect(await planned()).toMatchObject({ changes: [] });
      pin("0.0.25");
      await expect(checkT3(root.ctx)).rejects.toThrow(/older than t3 0\.0\.27,/);
    });

    it("while the freeze file exists, changes no version and says why; the version that runs is kept in order", async () => {
      pin("0.0.26");
      await t3.apply(root.ctx, await planned());
      mkdirSync(state("etc"), { recursive: true });
      writeFileSync(state("etc/t3-autoupdate.freeze"), "canary of alice failed on 0.0.28\n");
      pin("0.0.28");
      expect(await checkT3(root.ctx)).toEqual({
        skip: "FROZEN: a freeze holds: /etc/t3-autoupdate.freeze exists (canary of alice failed on 0.0.28), so t3 stays at 0.0.26 and 0.0.28 is not installed; remove the file once the problem is understood",
      });
      // The same version: nothing for the freeze to hold back.
      pin("0.0.26");
      expect(await planned()).toMatchObject({ changes: [] });
      rmSync(state("etc/t3-autoupdate.freeze"));
      pin("0.0.28");
      await t3.apply(root.ctx, await planned());
      expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.28/bin/t3");
    });
  });
});
