import { existsSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Inputs } from "../lib/inputs/index.ts";
import { nodeBinary, npmCli } from "../lib/layout.ts";
import { makeTestRoot, type TestRoot } from "../lib/test-context.ts";
import claudeCode from "./claude-code.ts";
import codex from "./codex.ts";
import type { Stage } from "../lib/stage.ts";
import t3Stage from "./t3.ts";

const NODE = "22.23.3";
const INTEGRITY = `sha512-${"A".repeat(86)}==`;
// Through the Stage contract, as the runner calls it.
const t3: Stage = t3Stage;
const T3_SOURCE = fileURLToPath(new URL("../test/fixtures/t3/bin/t3.js", import.meta.url));

// Installs the t3 stand-in of test/fixtures/t3 into --prefix; 0.0.27 is the
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

describe("the t3 stage", () => {
  let root: TestRoot;
  let registry: Server;
  const pin = (version: string) => {
    (root.ctx.inputs.pins.npm as { t3: object }).t3 = { version, integrity: INTEGRITY, approved: "test" };
  };

  beforeEach(async () => {
    registry = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ dist: { integrity: INTEGRITY } })));
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
      expect(await stage.check(root.ctx)).toEqual({ skip: "installing npm packages needs the pinned Node running on the machine itself, not under --root" });
    }
  });

  it("switches to a version that passes its health check, and says why running instances are not restarted here", async () => {
    const info: string[] = [];
    Object.assign(root.ctx.log, { info: (m: string) => info.push(m) });
    pin("0.0.26");
    expect(await t3.apply(root.ctx, { changes: [], managed: [] })).toEqual([{ kind: "package", name: "t3", from: null, to: "0.0.26" }]);
    expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.26/bin/t3");
    expect(await t3.inventory?.(root.ctx)).toEqual({ "npm:t3": "0.0.26" });
    // Under --root nothing runs; on a booted box the instances stage restarts idle instances.
    expect(info).toEqual([expect.stringMatching(/^running t3-serve@ instances: not started: /)]);
  });

  it("keeps the version before when the new one fails its health check, naming the check and what it saw", async () => {
    pin("0.0.26");
    await t3.apply(root.ctx, { changes: [], managed: [] });
    pin("0.0.27");
    const error = (await t3.apply(root.ctx, { changes: [], managed: [] }).catch((e: unknown) => e)) as Error & { hint?: string };
    expect(error.message).toBe(
      "t3 0.0.27 failed its health check (browser session): POST /api/auth/browser-session answered 404, then POST /api/auth/bootstrap answered 404; no t3_session cookie; t3 0.0.26 stays active",
    );
    expect(error.hint).toContain("/opt/devvm/npm/t3/0.0.27 was removed");
    expect(readlinkSync(path.join(root.dir, "usr/local/bin/t3"))).toBe("/opt/devvm/npm/t3/0.0.26/bin/t3");
    expect(readdirSync(path.join(root.dir, "opt/devvm/npm/t3"))).toEqual(["0.0.26"]);
    expect(existsSync(path.join(root.dir, "opt/devvm/npm/t3/0.0.26/bin/t3"))).toBe(true);
  });
});
