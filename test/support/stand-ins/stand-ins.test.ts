// The stand-ins the container tests use instead of sources this machine
// cannot reach: the registry (Verdaccio with the t3 fixtures) and the
// release downloads (the kubelogin zip, the kubectl stand-in). Host only, no containers.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeKubectl, makeTamperedKubectl } from "../fixtures/kubectl.ts";
import {
  KUBELOGIN_ASSET,
  KUBELOGIN_VERSION,
  kubeloginReleaseFiles,
  makeKubeloginZip,
  makeTamperedKubeloginZip,
} from "../fixtures/kubelogin.ts";
import { startArtifactStandIn } from "./artifacts.ts";
import { startRegistryStandIn, type RegistryStandIn } from "./registry.ts";
import { runCommand } from "./run-command.ts";

describe("registry stand-in", () => {
  let registry: RegistryStandIn;
  beforeAll(async () => {
    registry = await startRegistryStandIn();
  });
  afterAll(() => registry?.stop());

  it("serves only the t3 fixtures, never the upstream's t3, with latest on the bad nightly", async () => {
    const packument = (await (await fetch(`${registry.url}/t3`)).json()) as { versions: object; "dist-tags": object };
    expect(Object.keys(packument.versions)).toEqual(["0.0.26", "0.0.27", "0.0.28"]);
    expect(packument["dist-tags"]).toEqual({ latest: "0.0.27", nightly: "0.0.27", candidate: "0.0.28" });
    expect(await registry.integrityOf("t3", "0.0.26")).toMatch(/^sha512-/);
    expect(registry.requests()).toEqual([{ method: "GET", path: "/t3", status: 200 }]);
  });

  it("installs t3@0.0.26, which pairs a browser session", async () => {
    await using t3 = await installGlobally(registry, "t3@0.0.26");
    expect(registry.requests()).toEqual(
      expect.arrayContaining([
        { method: "GET", path: "/t3", status: 200 },
        { method: "GET", path: "/t3/-/t3-0.0.26.tgz", status: 200 },
      ]),
    );
    expect((await runCommand(t3.bin, ["--version"])).stdout.trim().split(/\s+/).at(-1)).toBe("v0.0.26");

    await using server = await startT3Serve(t3.bin, t3.baseDir);
    expect((await fetch(`${server.url}/`)).status).toBe(200);
    expect((await postCredential(server.url, "/api/auth/browser-session", "not-a-credential")).status).toBe(401);

    const session = await postCredential(server.url, "/api/auth/browser-session", await createCredential(t3));
    expect(session.status).toBe(200);
    expect(session.headers.get("set-cookie")).toMatch(/^t3_session=[\w-]+; HttpOnly; Path=\//);
    const fallback = await postCredential(server.url, "/api/auth/bootstrap", await createCredential(t3));
    expect(fallback.headers.get("set-cookie")).toMatch(/^t3_session=/);
  });

  it("installs t3@0.0.27, whose pairing routes answer 404", async () => {
    await using t3 = await installGlobally(registry, "t3@0.0.27");
    expect((await runCommand(t3.bin, ["--version"])).stdout.trim()).toBe("t3 v0.0.27");
    await using server = await startT3Serve(t3.bin, t3.baseDir);
    expect((await fetch(`${server.url}/`)).status).toBe(200);
    const credential = await createCredential(t3);
    expect((await postCredential(server.url, "/api/auth/browser-session", credential)).status).toBe(404);
    expect((await postCredential(server.url, "/api/auth/bootstrap", credential)).status).toBe(404);
  });

  it("proxies every other package from the host's registry", async () => {
    await using npm = await installGlobally(registry, "npm@11.19.1");
    expect(registry.requests()).toContainEqual({ method: "GET", path: "/npm/-/npm-11.19.1.tgz", status: 200 });
    expect((await runCommand(path.join(npm.prefix, "bin", "npm"), ["--version"])).stdout.trim()).toBe("11.19.1");
    const tarball = Buffer.from(await (await fetch(`${registry.url}/npm/-/npm-11.19.1.tgz`)).arrayBuffer());
    expect(await registry.integrityOf("npm", "11.19.1")).toBe(
      `sha512-${createHash("sha512").update(tarball).digest("base64")}`,
    );
  });
});

describe("artifact stand-in", () => {
  it("serves the kubelogin release zip by version and asset, 404 otherwise, logging every request", async () => {
    const kubelogin = await makeKubeloginZip();
    await using releases = await startArtifactStandIn(kubeloginReleaseFiles(kubelogin.zip));
    const asset = `/${KUBELOGIN_VERSION}/${KUBELOGIN_ASSET}`;
    const answer = await fetch(`${releases.url}${asset}`);
    expect(Buffer.from(await answer.arrayBuffer())).toEqual(kubelogin.zip);
    expect((await fetch(`${releases.url}/v1.36.3/${KUBELOGIN_ASSET}`)).status).toBe(404);
    expect(releases.requests()).toEqual([
      { method: "GET", path: asset, status: 200 },
      { method: "GET", path: `/v1.36.3/${KUBELOGIN_ASSET}`, status: 404 },
    ]);
    releases.clearRequests();
    expect(releases.requests()).toEqual([]);
  });

  it("builds the same zip every time, whose kubelogin prints its version; the tampered one differs", async () => {
    const [first, second, tampered] = await Promise.all([
      makeKubeloginZip(),
      makeKubeloginZip(),
      makeTamperedKubeloginZip(),
    ]);
    expect(second.zipSha256).toBe(first.zipSha256);
    expect(tampered.zipSha256).not.toBe(first.zipSha256);
    expect(tampered.binarySha256).not.toBe(first.binarySha256);

    await using dir = await tempDir("kubelogin-unzip-");
    const zipFile = path.join(dir.path, KUBELOGIN_ASSET);
    await writeFile(zipFile, first.zip);
    await runCommand("unzip", ["-q", "-o", zipFile], { cwd: dir.path });
    expect((await runCommand(path.join(dir.path, "kubelogin"), ["--version"])).stdout.trim()).toBe(
      `kubelogin version ${KUBELOGIN_VERSION}`,
    );
  });

  it("builds the same kubectl every time, answering version --client and echoing anything else; the tampered one differs", async () => {
    const kubectl = makeKubectl("v1.36.4");
    expect(makeKubectl("v1.36.4").sha256).toBe(kubectl.sha256);
    expect(makeTamperedKubectl("v1.36.4").sha256).not.toBe(kubectl.sha256);

    await using dir = await tempDir("kubectl-");
    const file = path.join(dir.path, "kubectl");
    await writeFile(file, kubectl.binary);
    await chmod(file, 0o755);
    expect((await runCommand(file, ["version", "--client"])).stdout).toBe("Client Version: v1.36.4\n");
    expect((await runCommand(file, ["config", "view", "--minify"])).stdout).toBe(
      "kubectl (test stand-in): config view --minify\n",
    );
  });
});

interface InstalledT3 extends AsyncDisposable {
  prefix: string;
  bin: string;
  baseDir: string;
}

/** `npm install -g` into a fresh prefix with a fresh npm cache, so every download shows in the log. */
async function installGlobally(registry: RegistryStandIn, spec: string): Promise<InstalledT3> {
  const dir = await tempDir("t3-install-");
  const prefix = path.join(dir.path, "prefix");
  await runCommand("npm", [
    "install",
    "-g",
    "--prefix",
    prefix,
    "--cache",
    path.join(dir.path, "cache"),
    "--registry",
    registry.url,
    "--no-audit",
    "--no-fund",
    spec,
  ]);
  return {
    prefix,
    bin: path.join(prefix, "bin", "t3"),
    baseDir: path.join(dir.path, "base"),
    [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose](),
  };
}

async function createCredential(t3: InstalledT3): Promise<string> {
  const { stdout } = await runCommand(t3.bin, [
    "auth",
    "pairing",
    "create",
    "--base-dir",
    t3.baseDir,
    "--ttl",
    "5m",
    "--json",
  ]);
  return (JSON.parse(stdout) as { credential: string }).credential;
}

function postCredential(url: string, route: string, credential: string): Promise<Response> {
  return fetch(`${url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ credential }),
  });
}

async function startT3Serve(bin: string, baseDir: string): Promise<{ url: string } & AsyncDisposable> {
  const port = await freePort();
  const child = spawn(bin, ["serve", "--host", "127.0.0.1", "--port", String(port), "--base-dir", baseDir], {
    stdio: "ignore",
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    await exited;
  };
  for (let tries = 0; ; tries++) {
    const ok = await fetch(`${url}/`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, [Symbol.asyncDispose]: stop };
    if (tries > 100 || child.exitCode !== null) {
      await stop();
      throw new Error(`t3 serve did not answer on ${url}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function tempDir(prefix: string): Promise<{ path: string } & AsyncDisposable> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { path: dir, [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }) };
}
