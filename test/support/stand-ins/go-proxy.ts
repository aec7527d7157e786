// Stand-in for a Go module proxy (GOPROXY; the protocol of
// https://go.dev/ref/mod#goproxy-protocol), which this machine cannot reach:
// a plain HTTP server on 127.0.0.1 serving the fixture modules of
// test/support/fixtures/go-modules/ and 404 for anything else, logging every
// request. Module paths and versions arrive case-encoded (`!o` for `O`).
//
//   await using proxy = await startGoProxyStandIn();
//   env DEVVM_GOPROXY = proxy.url        // go asks <url>/example.invalid/!org/signon/@v/v1.0.0.zip
//   proxy.serveTampered(true)            // the same names, other bytes: go.sum must refuse them
//
// It serves no checksum database (`/sumdb/...` answers 404, as a proxy that
// does not proxy one does): go.sum is the check. To write a fixture's
// go.sum with a real Go, run it alone and let go record what it serves:
//
//   npx tsx test/support/stand-ins/go-proxy.ts          # prints its URL
//   GOPROXY=URL GOSUMDB=off GOFLAGS=-mod=mod go mod tidy
import { closeServer, listenOnLoopback } from "./listen.ts";
import http from "node:http";
import { pathToFileURL } from "node:url";
import { moduleZip, readGoModuleFixtures, unescapeModulePath, type GoModuleRelease } from "../fixtures/go-modules.ts";
import { createRequestLog, type RequestLogEntry } from "./request-log.ts";

export interface GoProxyStandIn extends AsyncDisposable {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234: the GOPROXY value. */
  readonly url: string;
  readonly releases: GoModuleRelease[];
  /** Serve every zip tampered (same file names, other bytes), or as made again. */
  serveTampered(on: boolean): void;
  requests(): RequestLogEntry[];
  clearRequests(): void;
  stop(): Promise<void>;
}

// Every release's time, for the `.info` answers (a proxy gives the commit's time).
const RELEASE_TIME = "2025-01-01T00:00:00Z";

interface Answer {
  type: string;
  body: Buffer;
}

/** `port` 0 (the default) is a free one. */
export async function startGoProxyStandIn({ port = 0 } = {}): Promise<GoProxyStandIn> {
  const releases = readGoModuleFixtures();
  const zips = new Map(releases.map((r) => [r, { made: moduleZip(r), tampered: moduleZip(r, { tampered: true }) }]));
  let tampered = false;
  const log = createRequestLog();

  const answer = (urlPath: string): Answer | undefined => {
    // <module>/@v/list, <module>/@v/<version>.info|.mod|.zip, <module>/@latest
    const match = /^\/(.+?)\/@(?:v\/(?:(list)|(.+)\.(info|mod|zip))|(latest))$/.exec(urlPath);
    if (!match) return undefined;
    const [, escapedModule, list, escapedVersion, kind, latest] = match;
    const module = unescapeModulePath(escapedModule!);
    const versions = releases.filter((r) => r.module === module);
    if (versions.length === 0) return undefined;
    if (list) return { type: "text/plain", body: Buffer.from(versions.map((r) => `${r.version}\n`).join("")) };
    const version = latest ? versions.at(-1)?.version : unescapeModulePath(escapedVersion!);
    const release = versions.find((r) => r.version === version);
    if (!release) return undefined;
    if (latest || kind === "info")
      return { type: "application/json", body: Buffer.from(JSON.stringify({ Version: version, Time: RELEASE_TIME })) };
    if (kind === "mod") return { type: "text/plain", body: release.mod };
    const zip = zips.get(release)!;
    return { type: "application/zip", body: tampered ? zip.tampered : zip.made };
  };

  const server = http.createServer((req, res) => {
    const entry = log.record(req.method, req.url);
    const urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://stand-in").pathname);
    const found = req.method === "GET" || req.method === "HEAD" ? answer(urlPath) : undefined;
    entry.status = found ? 200 : 404;
    if (!found) {
      // go reads a 404 or 410 as "not here" (and tries the next proxy of its list).
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${urlPath}\n`);
      return;
    }
    res.writeHead(200, { "content-type": found.type, "content-length": found.body.length });
    res.end(req.method === "HEAD" ? undefined : found.body);
  });
  const url = await listenOnLoopback(server, port);
  const stop = () => closeServer(server);
  return {
    url,
    releases,
    serveTampered: (on) => {
      tampered = on;
    },
    requests: () => log.entries(),
    clearRequests: () => log.clear(),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const proxy = await startGoProxyStandIn({ port: Number(process.argv[2] ?? 0) });
  process.stdout.write(
    `${proxy.url}\n${proxy.releases.map((r) => `  ${r.module}@${r.version}`).join("\n")}\n(Ctrl-C stops it)\n`,
  );
}
