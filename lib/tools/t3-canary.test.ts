import { lstatSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeTestRoot } from "../../test/support/test-context.ts";
import { newestPrebumpCopy, signInThroughDispatch, turnsBusy } from "./t3-canary.ts";
import { readDeferred, writeDeferred } from "./t3-gate.ts";

describe("turnsBusy: what the live t3's database says", () => {
  const now = Date.parse("2026-12-04T03:00:00Z");
  it("is idle with no turn and no update for 15 minutes, or no rows", () => {
    expect(turnsBusy("0|2026-12-04T02:40:00.000Z", now)).toBeNull();
    expect(turnsBusy("0|", now)).toBeNull();
    // Seconds and milliseconds since the epoch, and sqlite's own text form (UTC).
    expect(turnsBusy(`0|${(now - 20 * 60_000) / 1000}`, now)).toBeNull();
    expect(turnsBusy(`0|${now - 20 * 60_000}`, now)).toBeNull();
    expect(turnsBusy("0|2026-12-04 02:44:00", now)).toBeNull();
  });
  it("is busy with a turn in progress or an update in the last 15 minutes", () => {
    expect(turnsBusy("2|2026-12-04T01:00:00Z", now)).toBe("busy: 2 turn(s) in progress");
    expect(turnsBusy("0|2026-12-04T02:50:00+00:00", now)).toBe("busy: its last update was 10 min ago");
    expect(turnsBusy("0|2026-12-04 02:46:00", now)).toBe("busy: its last update was 14 min ago");
  });
  it("takes any doubt as a reason to wait", () => {
    expect(turnsBusy("yesterday", now)).toBe('its database answered "yesterday"');
    expect(turnsBusy("0|not a time", now)).toBe("its last update (not a time) is no time");
  });
});

describe("signInThroughDispatch", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));
  const dispatch = async (
    answer: (n: number, headers: Record<string, unknown>) => [number, Record<string, string>],
  ) => {
    let n = 0;
    server = createServer((req, res) => {
      const [status, headers] = answer(++n, req.headers);
      res.writeHead(status, headers).end("bad gateway: could not sign you in\n");
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
  };

  it("signs in as the browser's first visit, until a cookie whose name starts with t3_session comes", async () => {
    const seen: Array<Record<string, unknown>> = [];
    const origin = await dispatch((n, headers) => {
      seen.push(headers);
      return n < 2 ? [502, {}] : [302, { "set-cookie": "t3_session_3774_9f3a=abc; Path=/" }];
    });
    expect(await signInThroughDispatch("alice.moreau", { origin, timeoutMs: 5000 })).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({ "x-authentik-username": "alice.moreau", "sec-fetch-dest": "document" });
  });

  it("fails after the limit, saying what the last answer was", async () => {
    const origin = await dispatch(() => [502, { "set-cookie": "other=1" }]);
    expect(await signInThroughDispatch("alice.moreau", { origin, timeoutMs: 1500 })).toEqual({
      ok: false,
      saw: "HTTP 502 with cookies other: bad gateway: could not sign you in (for 2 s)",
    });
  });
});

describe("the gate's files", () => {
  it("finds the newest copy made before a move to a version or away from one, never through a link", () => {
    using root = makeTestRoot();
    const dir = path.join(root.dir, "var/backups/t3-state/alice");
    mkdirSync(dir, { recursive: true });
    const make = (name: string, ageS: number) => {
      writeFileSync(path.join(dir, name), name);
      const t = Date.now() / 1000 - ageS;
      utimesSync(path.join(dir, name), t, t);
    };
    make("state-prebump-0.0.26-0.0.30.sqlite", 500);
    make("state-prebump-0.0.28-0.0.30.sqlite", 100);
    make("state-prebump-0.0.28-0.0.31.sqlite", 10);
    make("state-20261204T000000Z.sqlite", 1);
    symlinkSync("/etc/shadow", path.join(dir, "state-prebump-0.0.29-0.0.30.sqlite"));
    expect(newestPrebumpCopy(root.ctx, "alice", { to: "0.0.30" })).toBe(
      "/var/backups/t3-state/alice/state-prebump-0.0.28-0.0.30.sqlite",
    );
    expect(newestPrebumpCopy(root.ctx, "alice", { to: "0.0.32" })).toBeNull();
    expect(newestPrebumpCopy(root.ctx, "bob", { to: "0.0.30" })).toBeNull();
    // Away from a version: the way back to it.
    expect(newestPrebumpCopy(root.ctx, "alice", { from: "0.0.28" })).toBe(
      "/var/backups/t3-state/alice/state-prebump-0.0.28-0.0.31.sqlite",
    );
    expect(newestPrebumpCopy(root.ctx, "alice", { from: "0.0.29" })).toBeNull();
  });

  it("writes a deferred marker as the version, then where from, and reads back only what is one", async () => {
    using root = makeTestRoot();
    await writeDeferred(root.ctx, "bob", "0.0.30", "0.0.28");
    await writeDeferred(root.ctx, "carol", "0.0.30", null);
    const dir = path.join(root.dir, "var/lib/t3-autoupdate/deferred");
    writeFileSync(path.join(dir, "Eve"), "0.0.30\n");
    writeFileSync(path.join(dir, "dave"), "0.0.30; rm -rf /\n");
    symlinkSync("bob", path.join(dir, "mallory"));
    const { markers, unreadable } = readDeferred(root.ctx);
    expect(markers.map(({ user, to, from }) => ({ user, to, from }))).toEqual([
      { user: "bob", to: "0.0.30", from: "0.0.28" },
      { user: "carol", to: "0.0.30", from: null },
    ]);
    expect(markers[0]!.writtenMs).toBe(lstatSync(path.join(dir, "bob")).mtimeMs);
    expect(unreadable).toEqual([
      "/var/lib/t3-autoupdate/deferred/Eve",
      "/var/lib/t3-autoupdate/deferred/dave",
      "/var/lib/t3-autoupdate/deferred/mallory",
    ]);
  });
});
