// Stand-in for release downloads the tests cannot reach (kubelogin's GitHub
// releases, the Kubernetes release downloads): a plain HTTP server on
// 127.0.0.1 serving fixed files by path, 404 for anything else, logging every
// request.
//
//   await using releases = await startArtifactStandIn({ "/v1.36.2/kubelogin_linux_amd64.zip": zip });
//   env DEVVM_RELEASES_URL = releases.url   // the builder asks <url>/v1.36.2/kubelogin_linux_amd64.zip
//   releases.requests()                      // [{ method: "GET", path: "/v1.36.2/kubelogin_linux_amd64.zip", status: 200 }]
import { closeServer, listenOnLoopback } from "./listen.ts";
import http from "node:http";
import { createRequestLog, type RequestLogEntry } from "./request-log.ts";

export interface ArtifactStandIn extends AsyncDisposable {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234. */
  readonly url: string;
  requests(): RequestLogEntry[];
  clearRequests(): void;
  stop(): Promise<void>;
}

/** `files` maps URL paths (with the leading slash, no query) to their bytes; `port` 0 is a free one. */
export async function startArtifactStandIn(files: Record<string, Buffer>, port = 0): Promise<ArtifactStandIn> {
  const log = createRequestLog();
  const server = http.createServer((req, res) => {
    const entry = log.record(req.method, req.url);
    const body = files[new URL(req.url ?? "/", "http://stand-in").pathname];
    entry.status = body && (req.method === "GET" || req.method === "HEAD") ? 200 : 404;
    if (entry.status === 404) {
      res.writeHead(404, { "content-type": "text/plain" }).end("Not Found\n");
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body!.length });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  const url = await listenOnLoopback(server, port);
  const stop = () => closeServer(server);
  return {
    url,
    requests: () => log.entries(),
    clearRequests: () => log.clear(),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
