// Stand-in npm registry for the tests: Verdaccio 5.33, proxying the host's
// own npm registry (read at runtime with `npm config get registry`) for
// every package except `t3`, which is served only from the fixtures in
// test/support/fixtures/t3 (the upstream has an unrelated package of that name).
//
//   await using registry = await startRegistryStandIn();
//   registry.url                 // "http://127.0.0.1:PORT" (listens on loopback only)
//   registry.requests()          // [{ method: "GET", path: "/t3", status: 200 }, ...]
//   registry.clearRequests()
//   await registry.integrityOf("t3", "0.0.26")  // "sha512-…", the packument's dist.integrity
//   registry.npmrc               // a user config with a publish token for url
//   await registry.stop()        // also what `await using` calls
//
// Published when it starts: t3@0.0.26 (healthy), t3@0.0.27 (the bad
// nightly: pairing renamed) and t3@0.0.28 (healthy, tagged `candidate`);
// `latest` and `nightly` point at 0.0.27, so only an exact pin gets a
// healthy one. The request log starts empty.
//
// Requests are logged by a small proxy in front of Verdaccio: it takes the
// public port and forwards to Verdaccio on a unix socket in the temp dir,
// so the log holds exactly what reached the stand-in, in arrival order.
// It serves tarballs uncompressed, as the real registry does.
// integrityOf goes to the socket directly and is not logged.
import { closeServer } from "./listen.ts";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { publishT3Fixtures, T3_FIXTURE_VERSIONS, type T3FixtureVersion } from "../fixtures/t3/publish.ts";
import { createRequestLog, type RequestLog, type RequestLogEntry } from "./request-log.ts";
import { runCommand } from "./run-command.ts";
import { ensureVerdaccio } from "./verdaccio-install.ts";

export type { RequestLogEntry } from "./request-log.ts";

export interface RegistryStandIn extends AsyncDisposable {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234. */
  readonly url: string;
  /** npm user config holding an auth token for `url` (to publish more: `npm publish --registry URL --userconfig NPMRC`). */
  readonly npmrc: string;
  requests(): RequestLogEntry[];
  clearRequests(): void;
  integrityOf(name: string, version: string): Promise<string>;
  stop(): Promise<void>;
}

export interface RegistryStandInOptions {
  /** t3 versions to publish; default test/support/fixtures/t3's 0.0.26, 0.0.27 and 0.0.28. */
  t3Versions?: T3FixtureVersion[];
  /** Where to listen on 127.0.0.1; default a free port. */
  port?: number;
}

const START_TIMEOUT_MS = 60_000;

export async function startRegistryStandIn(options: RegistryStandInOptions = {}): Promise<RegistryStandIn> {
  const [verdaccio, upstream] = await Promise.all([ensureVerdaccio(), hostRegistry()]);
  const dir = await mkdtemp(path.join(tmpdir(), "registry-stand-in-"));
  const socketPath = path.join(dir, "verdaccio.sock");
  const configPath = path.join(dir, "config.yaml");
  // JSON is YAML, and needs no quoting rules of its own.
  await writeFile(configPath, JSON.stringify(verdaccioConfig(dir, socketPath, upstream), null, 2));

  // npm's cafile (e.g. a TLS-inspecting proxy's CA) is what Verdaccio needs to reach the same registry.
  const env = { ...process.env, ...(upstream.cafile && { NODE_EXTRA_CA_CERTS: upstream.cafile }) };
  const child = spawn(process.execPath, [verdaccio, "--config", configPath], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  let output = "";
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const log = createRequestLog();
  let proxy: http.Server | undefined;

  const stop = async () => {
    if (proxy) await closeServer(proxy);
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await waitUntilAnswering(socketPath, child, () => output);
    proxy = await startLoggingProxy(socketPath, log, options.port);
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const npmrc = path.join(dir, "npmrc");
    const token = await createPublisher(socketPath);
    await writeFile(npmrc, `//127.0.0.1:${(proxy.address() as AddressInfo).port}/:_authToken=${token}\n`, {
      mode: 0o600,
    });
    await publishT3Fixtures(url, npmrc, options.t3Versions ?? T3_FIXTURE_VERSIONS);
    log.clear();
    return {
      url,
      npmrc,
      requests: () => log.entries(),
      clearRequests: () => log.clear(),
      integrityOf: (name, version) => integrityOf(socketPath, name, version),
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await stop();
    throw new Error(
      `the registry stand-in did not start: ${error instanceof Error ? error.message : String(error)}\nVerdaccio's output:\n${output}`,
      { cause: error },
    );
  }
}

/** How the host's npm reaches its registry; Verdaccio's uplink goes the same way. */
interface HostRegistry {
  url: string;
  cafile?: string;
  httpsProxy?: string;
  noProxy?: string;
}

async function hostRegistry(): Promise<HostRegistry> {
  const { stdout } = await runCommand("npm", ["config", "get", "registry", "cafile", "https-proxy", "noproxy"]);
  const value = (key: string) => {
    const found = new RegExp(`^${key}=(.*)$`, "m").exec(stdout)?.[1]?.trim();
    return found && found !== "null" ? found : undefined;
  };
  const url = value("registry");
  if (!url) throw new Error(`\`npm config get registry\` named no registry: ${stdout}`);
  return { url, cafile: value("cafile"), httpsProxy: value("https-proxy"), noProxy: value("noproxy") };
}

function verdaccioConfig(dir: string, socketPath: string, upstream: HostRegistry) {
  const readPublish = { access: "$all", publish: "$authenticated" };
  return {
    storage: path.join(dir, "storage"),
    auth: { htpasswd: { file: path.join(dir, "htpasswd") } },
    // Two failures would mark the uplink offline for 5 minutes by default;
    // a test run should not go offline for one hiccup.
    uplinks: {
      upstream: {
        url: upstream.url,
        timeout: "120s",
        max_fails: 20,
        fail_timeout: "2s",
        ...(upstream.httpsProxy && { https_proxy: upstream.httpsProxy, http_proxy: upstream.httpsProxy }),
        ...(upstream.noProxy && { no_proxy: upstream.noProxy }),
      },
    },
    packages: {
      // Never proxied: the upstream's `t3` is an unrelated package.
      t3: readPublish,
      "@*/*": { ...readPublish, proxy: "upstream" },
      "**": { ...readPublish, proxy: "upstream" },
    },
    web: { enable: false },
    log: { type: "stdout", format: "pretty", level: "warn" },
    listen: `unix:${socketPath}`,
  };
}

async function waitUntilAnswering(socketPath: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`Verdaccio exited (${child.exitCode ?? child.signalCode})`);
    const ping = await socketRequest(socketPath, "GET", "/-/ping").catch(() => undefined);
    if (ping?.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Verdaccio did not answer within ${START_TIMEOUT_MS / 1000} s; output so far:\n${output()}`);
}

/** A Verdaccio user (htpasswd in the temp dir) whose token may publish. */
async function createPublisher(socketPath: string): Promise<string> {
  const name = "stand-in";
  const body = JSON.stringify({ name, password: "stand-in-password" });
  const answer = await socketRequest(socketPath, "PUT", `/-/user/org.couchdb.user:${name}`, body);
  const token = (JSON.parse(answer.body) as { token?: string }).token;
  if (answer.status !== 201 || !token)
    throw new Error(`creating the publishing user answered ${answer.status}: ${answer.body}`);
  return token;
}

async function integrityOf(socketPath: string, name: string, version: string): Promise<string> {
  const answer = await socketRequest(socketPath, "GET", `/${name.replace("/", "%2f")}`);
  if (answer.status !== 200)
    throw new Error(`the registry stand-in has no ${name} (${answer.status}): ${answer.body.slice(0, 500)}`);
  const packument = JSON.parse(answer.body) as { versions?: Record<string, { dist?: { integrity?: string } }> };
  const integrity = packument.versions?.[version]?.dist?.integrity;
  if (!integrity) throw new Error(`the registry stand-in has no integrity for ${name}@${version}`);
  return integrity;
}

function startLoggingProxy(socketPath: string, log: RequestLog, port = 0): Promise<http.Server> {
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const entry = log.record(req.method, req.url);
    // Headers pass as they came (Verdaccio writes tarball URLs from the Host header, which names this
    // proxy), but for a tarball's Accept-Encoding: the real registry serves a tarball as stored, while
    // Verdaccio gzips it on the fly when the client accepts gzip (npm does), seconds of CPU per package.
    const headers = { ...req.headers };
    if (req.url?.includes("/-/")) delete headers["accept-encoding"];
    const forward = http.request({ socketPath, agent, method: req.method, path: req.url, headers }, (answer) => {
      entry.status = answer.statusCode;
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      pipeline(answer, res).catch(() => res.destroy());
    });
    forward.on("error", (error) => {
      entry.status = 502;
      if (res.headersSent) return res.destroy();
      res.writeHead(502, { "content-type": "text/plain" }).end(`registry stand-in: ${error.message}\n`);
    });
    pipeline(req, forward).catch(() => forward.destroy());
  });
  server.on("close", () => agent.destroy());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

function socketRequest(
  socketPath: string,
  method: string,
  target: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers =
      body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
    const req = http.request({ socketPath, method, path: target, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
