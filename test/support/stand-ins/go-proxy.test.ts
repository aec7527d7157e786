// The Go module proxy stand-in on the host, no containers: the protocol's
// four answers with Go's case encoding, Go's zip layout, the go.sum hashes
// of what it serves (computed here, and by a real Go when there is one),
// and the tampered zip that go.sum must refuse.
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirhash1, escapeModulePath, goSumLines, unescapeModulePath } from "../fixtures/go-modules.ts";
import { startGoProxyStandIn, type GoProxyStandIn } from "./go-proxy.ts";
import { runCommand } from "./run-command.ts";

const MODULE = "example.invalid/Org/signon";
const ESCAPED = "example.invalid/!org/signon";
const hasGo = spawnSync("go", ["version"]).status === 0;

describe("Go module proxy stand-in", () => {
  let proxy: GoProxyStandIn;
  beforeAll(async () => {
    proxy = await startGoProxyStandIn();
  });
  afterAll(() => proxy?.stop());
  const get = async (urlPath: string) => {
    const answer = await fetch(`${proxy.url}${urlPath}`);
    return { status: answer.status, body: Buffer.from(await answer.arrayBuffer()) };
  };

  it("encodes capitals as go does, both ways", () => {
    expect(escapeModulePath(MODULE)).toBe(ESCAPED);
    expect(unescapeModulePath(ESCAPED)).toBe(MODULE);
    expect(unescapeModulePath(MODULE)).toBeUndefined();
    expect(unescapeModulePath("example.invalid/!Org/signon")).toBeUndefined();
  });

  it("serves the list, .info, .mod and .zip of the fixture module at its case-encoded path, 404 otherwise", async () => {
    proxy.clearRequests();
    expect((await get(`/${ESCAPED}/@v/list`)).body.toString()).toBe("v1.0.0\n");
    expect(JSON.parse((await get(`/${ESCAPED}/@v/v1.0.0.info`)).body.toString())).toEqual({
      Version: "v1.0.0",
      Time: "2025-01-01T00:00:00Z",
    });
    expect(JSON.parse((await get(`/${ESCAPED}/@latest`)).body.toString())).toMatchObject({ Version: "v1.0.0" });
    expect((await get(`/${ESCAPED}/@v/v1.0.0.mod`)).body.toString()).toBe(
      "module example.invalid/Org/signon\n\ngo 1.22\n",
    );
    // go sends the `!` percent-encoded.
    expect((await get(`/example.invalid/%21org/signon/@v/v1.0.0.zip`)).status).toBe(200);
    for (const missing of [
      `/${MODULE}/@v/list`,
      `/${ESCAPED}/@v/v1.0.1.zip`,
      `/example.invalid/other/@v/list`,
      `/sumdb/sumdb.example/supported`,
    ])
      expect((await get(missing)).status, missing).toBe(404);
    expect(proxy.requests()).toHaveLength(9);
    expect(proxy.requests()[0]).toEqual({ method: "GET", path: `/${ESCAPED}/@v/list`, status: 200 });
    expect(proxy.requests().at(-1)).toEqual({ method: "GET", path: "/sumdb/sumdb.example/supported", status: 404 });
  });

  it("serves a zip in Go's module layout whose go.sum hashes are the fixture's", async () => {
    await using dir = await tempDir();
    const zip = (await get(`/${ESCAPED}/@v/v1.0.0.zip`)).body;
    const names = await unzipped(dir.path, zip);
    expect(names).toEqual([`${MODULE}@v1.0.0/go.mod`, `${MODULE}@v1.0.0/signon.go`]);
    const files = await Promise.all(
      names.map(async (name) => ({ name, content: await readFile(path.join(dir.path, name)) })),
    );
    const mod = (await get(`/${ESCAPED}/@v/v1.0.0.mod`)).body;
    const [release] = proxy.releases;
    expect(goSumLines(release!)).toEqual([
      `${MODULE} v1.0.0 ${dirhash1(files)}`,
      `${MODULE} v1.0.0/go.mod ${dirhash1([{ name: "go.mod", content: mod }])}`,
    ]);
  });

  it("serves a tampered zip when told, the same names with other bytes and another hash, and the made one again after", async () => {
    await using dir = await tempDir();
    const made = (await get(`/${ESCAPED}/@v/v1.0.0.zip`)).body;
    proxy.serveTampered(true);
    const tampered = (await get(`/${ESCAPED}/@v/v1.0.0.zip`)).body;
    proxy.serveTampered(false);
    expect((await get(`/${ESCAPED}/@v/v1.0.0.zip`)).body).toEqual(made);
    expect(tampered).not.toEqual(made);
    const names = await unzipped(dir.path, tampered);
    expect(names).toEqual([`${MODULE}@v1.0.0/go.mod`, `${MODULE}@v1.0.0/signon.go`]);
    const files = await Promise.all(
      names.map(async (name) => ({ name, content: await readFile(path.join(dir.path, name)) })),
    );
    const [release] = proxy.releases;
    expect(dirhash1(files)).not.toBe(goSumLines(release!)[0]!.split(" ")[2]);
    expect(`${MODULE} v1.0.0 ${dirhash1(files)}`).toBe(goSumLines(release!, { tampered: true })[0]);
  });

  it.skipIf(!hasGo)("is a proxy a real go downloads from, computing the same hashes", async () => {
    await using dir = await tempDir();
    const env = {
      PATH: process.env.PATH,
      HOME: dir.path,
      GOENV: "off",
      GOPATH: `${dir.path}/gopath`,
      GOMODCACHE: `${dir.path}/mod`,
      GOCACHE: `${dir.path}/cache`,
      GOFLAGS: "-modcacherw",
      GOPROXY: proxy.url,
      GOSUMDB: "off",
      GOTOOLCHAIN: "local",
    };
    const { stdout } = await runCommand("go", ["mod", "download", "-json", `${MODULE}@v1.0.0`], {
      cwd: dir.path,
      env,
    });
    const downloaded = JSON.parse(stdout) as { Sum: string; GoModSum: string };
    const [release] = proxy.releases;
    expect([`${MODULE} v1.0.0 ${downloaded.Sum}`, `${MODULE} v1.0.0/go.mod ${downloaded.GoModSum}`]).toEqual(
      goSumLines(release!),
    );
  });
});

async function unzipped(dir: string, zip: Buffer): Promise<string[]> {
  await writeFile(path.join(dir, "module.zip"), zip);
  const listed = await runCommand("unzip", ["-Z1", "module.zip"], { cwd: dir });
  await runCommand("unzip", ["-q", "module.zip", "-d", dir], { cwd: dir });
  return listed.stdout.trim().split("\n").sort();
}

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await mkdtemp(path.join(tmpdir(), "go-proxy-test-"));
  return { path: dir, [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }) };
}
