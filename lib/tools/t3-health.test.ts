import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkT3Health, type T3HealthOptions } from "./t3-health.ts";

// A tiny t3: --version, serve, auth pairing create. FAKE_T3_MODE picks how it
// behaves; it records its server's pid and base dir in FAKE_T3_STATE.
const FAKE_T3 = String.raw`#!/usr/bin/env node
const fs = require("node:fs"), http = require("node:http"), path = require("node:path");
const mode = process.env.FAKE_T3_MODE || "good";
const args = process.argv.slice(2);
const option = (name) => args[args.indexOf(name) + 1];
if (args[0] === "--version") { console.log(mode === "wrong-version" ? "t3 v0.0.27" : "t3 v0.0.26"); process.exit(0); }
if (args[0] === "auth" && args[1] === "pairing" && args[2] === "create") {
  if (mode === "no-credential") { console.log("{}"); process.exit(0); }
  const credential = "pair-" + Math.random().toString(36).slice(2);
  fs.writeFileSync(path.join(option("--base-dir"), "pairing.json"), JSON.stringify({ credential }));
  console.log(JSON.stringify({ credential, expiresAt: "soon" }));
  process.exit(0);
}
if (args[0] !== "serve") process.exit(64);
const baseDir = option("--base-dir");
fs.writeFileSync(path.join(process.env.FAKE_T3_STATE, "serve.json"), JSON.stringify({ pid: process.pid, baseDir, uid: process.getuid(), home: process.env.HOME, probe: process.env.DEVVM_HEALTH_PROBE ?? null, db: fs.existsSync(path.join(baseDir, "userdata", "state.sqlite")) && fs.statSync(path.join(baseDir, "userdata", "state.sqlite")).uid }));
if (mode === "crash") { console.error("state.sqlite: migration failed"); process.exit(3); }
// Fails its migration only on a database that has something in it, and serves on.
const db = path.join(baseDir, "userdata", "state.sqlite");
if (mode === "migration" && fs.existsSync(db) && fs.statSync(db).size > 0) console.error("PersistenceSqlError: no column named archived_at");
const routes = { good: ["/api/auth/browser-session", "/api/auth/bootstrap"], migration: ["/api/auth/browser-session"], "port-cookie": ["/api/auth/browser-session"], "other-cookie": ["/api/auth/browser-session"], "bootstrap-only": ["/api/auth/bootstrap"] }[mode] || [];
// t3 names the cookie t3_session_<port>_<hash> on some bindings.
const cookie = { "port-cookie": "t3_session_" + option("--port") + "_9f3a=abc", "other-cookie": "session=abc" }[mode] || "t3_session=abc";
http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    if (req.method === "GET" && req.url === "/") return res.writeHead(mode === "not-ready" ? 503 : 200).end("t3");
    if (req.method !== "POST" || !routes.includes(req.url)) return res.writeHead(404).end();
    const { credential } = JSON.parse(fs.readFileSync(path.join(baseDir, "pairing.json"), "utf8"));
    if (JSON.parse(body).credential !== credential) return res.writeHead(401).end();
    res.writeHead(200, { "set-cookie": cookie + "; HttpOnly; Path=/" }).end("{}");
  });
}).listen(Number(option("--port")), option("--host"));
`;

describe("checkT3Health", () => {
  let dir: string;
  const log = { info: () => {}, debug: () => {} };
  const check = (mode: string, extra: Partial<T3HealthOptions> = {}) =>
    checkT3Health(
      { log },
      {
        t3: path.join(dir, "t3"),
        expectedVersion: "0.0.26",
        env: { FAKE_T3_MODE: mode, FAKE_T3_STATE: dir },
        ...extra,
      },
    );
  const serveState = () =>
    JSON.parse(readFileSync(path.join(dir, "serve.json"), "utf8")) as { pid: number; baseDir: string };
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "devvm-fake-t3-"));
    writeFileSync(path.join(dir, "t3"), FAKE_T3, { mode: 0o755 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is healthy when a browser session is made on /api/auth/browser-session; the server is stopped and its dir removed", async () => {
    expect(await check("good")).toEqual({ healthy: true });
    const { pid, baseDir } = serveState();
    expect(alive(pid)).toBe(false);
    expect(existsSync(baseDir)).toBe(false);
  });

  it("counts a cookie whose name starts with t3_session (t3_session_<port>_<hash>), and only such a one", async () => {
    expect(await check("port-cookie")).toEqual({ healthy: true });
    expect(await check("other-cookie")).toEqual({
      healthy: false,
      check: "browser session",
      saw: "POST /api/auth/browser-session answered 200 with cookies session; no t3_session cookie",
    });
  });

  it("falls back to /api/auth/bootstrap when the first route answers 404", async () => {
    expect(await check("bootstrap-only")).toEqual({ healthy: true });
  });

  it("is unhealthy when neither route makes a session, naming both routes and their answers", async () => {
    const health = await check("broken");
    expect(health).toEqual({
      healthy: false,
      check: "browser session",
      saw: "POST /api/auth/browser-session answered 404, then POST /api/auth/bootstrap answered 404; no t3_session cookie",
    });
    const { pid, baseDir } = serveState();
    expect(alive(pid)).toBe(false);
    expect(existsSync(baseDir)).toBe(false);
  });

  it("checks the version first, from the last word of `t3 --version`", async () => {
    expect(await check("wrong-version")).toEqual({
      healthy: false,
      check: "version",
      saw: '`t3 --version` printed "t3 v0.0.27", expected 0.0.26',
    });
  });

  it("reports a server that exits before answering, with its output", async () => {
    const health = await check("crash");
    expect(health).toMatchObject({ healthy: false, check: "serve" });
    expect(health.healthy || health.saw).toMatch(
      /exited with 3 before answering GET \/:\nstate.sqlite: migration failed/,
    );
  });

  it("gives up waiting for GET / = 200 after the timeout, naming the last answer", async () => {
    const health = await check("not-ready", { readyTimeoutMs: 1000 });
    expect(health).toEqual({
      healthy: false,
      check: "serve",
      saw: "GET / did not answer 200 within 1 s (last: HTTP 503)",
    });
    expect(alive(serveState().pid)).toBe(false);
  });

  it("is unhealthy when the pairing command prints no credential", async () => {
    expect(await check("no-credential")).toMatchObject({ healthy: false, check: "pairing credential" });
  });

  it("runs on a copy of a populated database as production runs it, and fails on a migration error in the output", async () => {
    const copyDatabase = async (userdata: string) =>
      writeFileSync(path.join(userdata, "state.sqlite"), "SQLite format 3\0 and a real user's rows");
    expect(await check("migration")).toEqual({ healthy: true });
    const health = await check("migration", { copyDatabase });
    expect(health).toEqual({
      healthy: false,
      check: "migration",
      saw: "`t3 serve` on a copy of a populated state.sqlite logged: PersistenceSqlError: no column named archived_at",
    });
    // The copy was where t3 serve looks, and is gone with its folder.
    expect(existsSync(path.join(serveState().baseDir, "userdata"))).toBe(false);
    expect(await check("good", { copyDatabase })).toEqual({ healthy: true });
  });

  it.skipIf(process.getuid?.() !== 0)(
    "runs t3 as the database's owner when told, in a clean environment: none of the builder's own variables",
    async () => {
      // nobody reaches the fake t3 and its record: a folder of its own, open to all.
      const open = mkdtempSync(path.join(tmpdir(), "devvm-fake-t3-open-"));
      chmodSync(open, 0o777);
      writeFileSync(path.join(open, "t3"), FAKE_T3, { mode: 0o755 });
      process.env.DEVVM_HEALTH_PROBE = "a builder's secret";
      try {
        const health = await checkT3Health(
          { log },
          {
            t3: path.join(open, "t3"),
            expectedVersion: "0.0.26",
            env: { FAKE_T3_MODE: "good", FAKE_T3_STATE: open, PATH: process.env.PATH ?? "/usr/bin:/bin" },
            copyDatabase: async (userdata) => writeFileSync(path.join(userdata, "state.sqlite"), "SQLite format 3\0"),
            runAs: { uid: 65534, gid: 65534 },
          },
        );
        expect(health).toEqual({ healthy: true });
        const served = JSON.parse(readFileSync(path.join(open, "serve.json"), "utf8")) as Record<string, unknown>;
        expect(served).toMatchObject({ uid: 65534, probe: null, db: 65534 });
        expect(served.home).toBe(served.baseDir);
      } finally {
        delete process.env.DEVVM_HEALTH_PROBE;
        rmSync(open, { recursive: true, force: true });
      }
    },
  );
});
