// The download cache keeps only complete, verified files: partial downloads
// a killed build left are removed by the next, a damaged cached file is
// replaced; a download reads at most its limit and carries no credentials,
// wherever a redirect takes it.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { sendEndless, startHostileServer } from "../../test/support/stand-ins/hostile-server.ts";
import { Background } from "../core/background.ts";
import { download, downloadUnpinned } from "./download.ts";
import { ARTIFACT_LIMITS, BODY_LIMITS, BodyTooLargeError, MiB } from "./http-body.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";

const BODY = Buffer.from("the artifact\n");
const SHA256 = createHash("sha256").update(BODY).digest("hex");

/** The pid of a process that has ended. */
function deadPid(): number {
  return spawnSync("true").pid!;
}

function testRoot() {
  const lines: string[] = [];
  const root = makeTestRoot({ log: { info: (m) => lines.push(m), debug: () => {} } });
  return { root, lines };
}

describe("the download cache", () => {
  it("removes the partial downloads of processes that are gone, before the first download", async () => {
    await using server = await startHostileServer((_, response) => response.end(BODY));
    const { root, lines } = testRoot();
    using _ = root;
    const cache = root.ctx.cacheDir;
    mkdirSync(path.join(cache, "sha256"), { recursive: true });
    mkdirSync(path.join(cache, "sha512"), { recursive: true });
    const dead = deadPid();
    const stale = [
      `sha256/${"a".repeat(64)}.part-${dead}`,
      `sha256/unpinned.part-${dead}`,
      `sha512/${"b".repeat(128)}.part-${dead}`,
      `sha256/${"c".repeat(64)}.part-${process.pid}`,
    ];
    // A running process's (a `build.ts lock` beside the build) stays, unless nothing wrote to it for an hour.
    const live = `sha256/${"d".repeat(64)}.part-${process.ppid}`;
    const abandoned = `sha256/${"e".repeat(64)}.part-1`;
    for (const name of [...stale, live, abandoned]) writeFileSync(path.join(cache, name), "half");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(path.join(cache, abandoned), twoHoursAgo, twoHoursAgo);
    const complete = path.join(cache, "sha256", "f".repeat(64));
    writeFileSync(complete, "not touched by the sweep");

    await download(root.ctx, `${server.url}/kubectl`, { sha256: SHA256 });
    for (const name of [...stale, abandoned]) expect(existsSync(path.join(cache, name)), name).toBe(false);
    expect(existsSync(path.join(cache, live))).toBe(true);
    expect(existsSync(complete)).toBe(true);
    expect(lines[0]).toMatch(new RegExp(`^removed 5 partial downloads a killed build left in ${cache}: `));
    expect(readdirSync(path.join(cache, "sha256")).sort()).toEqual(
      [SHA256, "d".repeat(64) + `.part-${process.ppid}`, "f".repeat(64)].sort(),
    );
  });

  it("hashes a cached file again before using it, and replaces one that no longer matches", async () => {
    await using server = await startHostileServer((_, response) => response.end(BODY));
    const { root, lines } = testRoot();
    using _ = root;
    const cached = path.join(root.ctx.cacheDir, "sha256", SHA256);
    mkdirSync(path.dirname(cached), { recursive: true });
    writeFileSync(cached, "damaged");
    expect(await download(root.ctx, `${server.url}/kubectl`, { sha256: SHA256 })).toBe(cached);
    expect(readFileSync(cached).equals(BODY)).toBe(true);
    expect(lines[0]).toBe(`the cached kubectl (${cached}) no longer matches its pin; removed, downloading it again`);
    expect(server.requests).toHaveLength(1);
    // Verified now: a second use neither downloads nor says anything.
    await download(root.ctx, `${server.url}/kubectl`, { sha256: SHA256 });
    expect(server.requests).toHaveLength(1);
  });

  it("uses an intact cached file without a request", async () => {
    await using server = await startHostileServer((_, response) => response.end(BODY));
    const { root } = testRoot();
    using _ = root;
    const cached = path.join(root.ctx.cacheDir, "sha256", SHA256);
    mkdirSync(path.dirname(cached), { recursive: true });
    writeFileSync(cached, BODY);
    expect(await download(root.ctx, `${server.url}/kubectl`, { sha256: SHA256 })).toBe(cached);
    expect(server.requests).toHaveLength(0);
  });
});

describe("a download from a hostile server", () => {
  const saved = { ...BODY_LIMITS };
  const savedArtifacts = { ...ARTIFACT_LIMITS };
  afterEach(() => {
    Object.assign(BODY_LIMITS, saved);
    Object.assign(ARTIFACT_LIMITS, savedArtifacts);
  });

  it("stops a download prepared in the background when the build ends (a stage after a failure will not use it), without retrying or leaving a part", async () => {
    await using server = await startHostileServer((_, response, state) => sendEndless(response, state, {}));
    const { root } = testRoot();
    using _ = root;
    const background = new Background();
    const started = Date.now();
    const downloading = download({ ...root.ctx, background }, `${server.url}/node.tgz`, { sha256: SHA256 }).catch(
      (e: unknown) => e,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    await background.settle(root.ctx.log);
    expect(await downloading).toBeInstanceOf(Error);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(server.requests).toHaveLength(1);
    expect(readdirSync(path.join(root.ctx.cacheDir, "sha256"))).toEqual([]);
  });

  it("stops an endless body at the artifact limit, leaving nothing in the cache, without retrying", async () => {
    BODY_LIMITS.artifact = 2 * MiB;
    await using server = await startHostileServer((_, response, state) => sendEndless(response, state, {}));
    const { root } = testRoot();
    using _ = root;
    const error = await download(root.ctx, `${server.url}/kubectl`, { sha256: SHA256 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyTooLargeError);
    expect((error as Error).message).toBe(
      `GET ${server.url}/kubectl: the answer passed 2 MiB, the limit for a download; stopped reading there`,
    );
    expect((error as BodyTooLargeError).received).toBeLessThan(3 * MiB);
    expect(await server.hungUp()).toBeLessThan(2 * MiB + 32 * MiB);
    expect(server.requests).toHaveLength(1);
    expect(readdirSync(path.join(root.ctx.cacheDir, "sha256"))).toEqual([]);
  });

  it("holds a download to its pinned size, and refuses an announced size over it before reading", async () => {
    await using server = await startHostileServer((url, response, state) =>
      url === "/sized" ? response.end(Buffer.alloc(2048)) : sendEndless(response, state, {}),
    );
    const { root } = testRoot();
    using _ = root;
    await expect(download(root.ctx, `${server.url}/endless`, { sha256: SHA256, size: 1024 })).rejects.toThrow(
      "the answer passed 1024 bytes, the limit for a download of its pinned size; stopped reading there",
    );
    await expect(download(root.ctx, `${server.url}/sized`, { sha256: SHA256, size: 1024 })).rejects.toThrow(
      `GET ${server.url}/sized: the server announces 2048 bytes (Content-Length), over the 1024 bytes limit for a download of its pinned size; not read`,
    );
  });

  it("holds a download without a pinned size to its artifact's limit, and refuses an announced size over it before reading", async () => {
    ARTIFACT_LIMITS["Node's archive"] = 1 * MiB;
    await using server = await startHostileServer((url, response, state) =>
      url === "/announced"
        ? response.writeHead(200, { "content-length": String(2 * MiB) }).end()
        : sendEndless(response, state, {}),
    );
    const { root } = testRoot();
    using _ = root;
    await expect(download(root.ctx, `${server.url}/endless`, { sha256: SHA256, of: "Node's archive" })).rejects.toThrow(
      "the answer passed 1 MiB, the limit for a download of Node's archive; stopped reading there",
    );
    await expect(
      download(root.ctx, `${server.url}/announced`, { sha256: SHA256, of: "Node's archive" }),
    ).rejects.toThrow(
      `GET ${server.url}/announced: the server announces ${2 * MiB} bytes (Content-Length), over the 1 MiB limit for a download of Node's archive; not read`,
    );
  });

  it("stops the lock's unpinned downloads at their artifact's limit too", async () => {
    ARTIFACT_LIMITS["kubectl's binary"] = 1 * MiB;
    await using server = await startHostileServer((_, response, state) => sendEndless(response, state, {}));
    const { root } = testRoot();
    using _ = root;
    await expect(downloadUnpinned(root.ctx, `${server.url}/kubectl`, "kubectl's binary")).rejects.toThrow(
      "the answer passed 1 MiB, the limit for a download of kubectl's binary",
    );
    expect(readdirSync(path.join(root.ctx.cacheDir, "sha256"))).toEqual([]);
  });

  it("follows a redirect to another host (GitHub's release assets) carrying no credentials to either", async () => {
    await using assets = await startHostileServer((_, response) => response.end(BODY));
    await using releases = await startHostileServer((url, response) =>
      response.writeHead(302, { location: `${assets.url}/asset${url}` }).end(),
    );
    const { root } = testRoot();
    using _ = root;
    const file = await download(root.ctx, `${releases.url}/v1.36.2/kubelogin_linux_amd64.zip`, { sha256: SHA256 });
    expect(readFileSync(file).equals(BODY)).toBe(true);
    expect(assets.requests.map((r) => r.url)).toEqual(["/asset/v1.36.2/kubelogin_linux_amd64.zip"]);
    for (const { headers } of [...releases.requests, ...assets.requests]) {
      for (const credential of ["authorization", "proxy-authorization", "cookie", "x-vault-token"])
        expect(headers).not.toHaveProperty(credential);
    }
  });

  it("asks for the bytes as stored, so a registry does not gzip an archive on the fly", async () => {
    // A server that compresses when the request allows it, as Verdaccio does.
    await using server = await startHostileServer((_, response, self) => {
      const accepted = String(self.requests.at(-1)?.headers["accept-encoding"] ?? "");
      if (!/gzip/.test(accepted)) return response.end(BODY);
      response.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync(BODY));
    });
    const { root } = testRoot();
    using _ = root;
    const file = await download(root.ctx, `${server.url}/node-linux-x64.tgz`, { sha256: SHA256 });
    expect(readFileSync(file).equals(BODY)).toBe(true);
    expect(server.requests.map((r) => r.headers["accept-encoding"])).toEqual(["identity"]);
  });
});
