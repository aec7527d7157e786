// A stand-in for tests only: a real git server for the org's public infra
// repository and its Forgejo, which this machine cannot reach. It is git's
// own smart HTTP (`git http-backend` run as a CGI) on 127.0.0.1, so clones,
// fetches and pushes speak the real protocol.
//
//   await using git = await startGitStandIn();
//   git.addUser("alice", "TOKEN");
//   await git.addRepo("devvm", ["alice"]);
//   git.publicInfraUrl              // no credentials, read only (a push gets 403)
//   git.forgejoInfraUrl             // the same repository on disk; any known user, push allowed
//   `${git.repoBase}/devvm.git`     // only its readers; another user gets 404, as Forgejo hides it
//   git.requests()                  // [{ method: "GET", path: "/forgejo/org/devvm.git/info/refs", user: "alice", status: 200 }, ...]
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { CommandError } from "../../../lib/core/errors.ts";

export interface GitStandIn extends AsyncDisposable {
  url: string; // http://127.0.0.1:PORT
  publicInfraUrl: string; // `${url}/public/infra.git`
  forgejoInfraUrl: string; // `${url}/forgejo/org/infra.git`
  repoBase: string; // `${url}/forgejo/org` (so a repo is `${repoBase}/${name}.git`)
  addUser(name: string, token: string): void;
  addRepo(name: string, readers: string[], files?: Record<string, string | Buffer>): Promise<void>; // a private repo with one commit on master
  commit(repo: "infra" | string, files: Record<string, string | Buffer>, message: string): Promise<string>; // new commit on master, returns its sha
  /** Oldest first: path without the query, user only when a token matched, status 0 while still being answered. */
  requests(): Array<{ method: string; path: string; user?: string; status: number }>;
  clearRequests(): void;
}
type GitRequest = ReturnType<GitStandIn["requests"]>[number];

/** What git-crypt stores for an encrypted file: its header, then nonce and ciphertext (fixed pseudo-random bytes here). */
export const INFRA_SECRET_CIPHERTEXT = Buffer.concat([
  Buffer.from("\0GITCRYPT\0", "latin1"),
  createHash("sha512").update("stand-in secrets/prod.env").digest(),
]);

/** The infra repository's first commit. */
export const INFRA_FILES: Readonly<Record<string, string | Buffer>> = {
  "README.md": "# infra\n\nThe org's infrastructure repository (test stand-in).\n",
  "scripts/hello.sh": "#!/bin/sh\necho hello from infra\n",
  ".gitattributes": "secrets/** filter=git-crypt diff=git-crypt\n",
  "secrets/prod.env": INFRA_SECRET_CIPHERTEXT,
};

// The host's git config must not change what the stand-in does (default
// branch, hooks, signing), and fixed names and dates make every sha the same
// on every run.
const GIT_ENV = {
  PATH: process.env.PATH,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "Stand-in",
  GIT_AUTHOR_EMAIL: "stand-in@example.invalid",
  GIT_AUTHOR_DATE: "2026-01-01T00:00:00Z",
  GIT_COMMITTER_NAME: "Stand-in",
  GIT_COMMITTER_EMAIL: "stand-in@example.invalid",
  GIT_COMMITTER_DATE: "2026-01-01T00:00:00Z",
};
const REPO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export async function startGitStandIn(): Promise<GitStandIn> {
  const dir = await mkdtemp(path.join(tmpdir(), "git-stand-in-"));
  const root = path.join(dir, "repos");
  await mkdir(root);
  const users = new Map<string, string>();
  const readers = new Map<string, string[]>();
  let log: GitRequest[] = [];
  let indexes = 0;

  const git = (args: string[], input?: string | Buffer, env: Record<string, string> = {}) =>
    new Promise<string>((resolve, reject) => {
      const child = execFile("git", args, { cwd: root, env: { ...GIT_ENV, ...env } }, (error, stdout, stderr) =>
        error ? reject(new CommandError(`git ${args.join(" ")}`, child.exitCode, stderr)) : resolve(stdout.trim()),
      );
      child.stdin!.end(input);
    });

  // Plumbing on a throwaway index: the repositories are bare, with no work tree to commit from.
  const commit = async (repo: string, files: Record<string, string | Buffer>, message: string) => {
    const gitDir = `--git-dir=${repo}.git`;
    const env = { GIT_INDEX_FILE: path.join(dir, `index-${indexes++}`) };
    const parent = await git([gitDir, "for-each-ref", "--format=%(objectname)", "refs/heads/master"]);
    await git([gitDir, "read-tree", ...(parent ? [parent] : ["--empty"])], undefined, env);
    for (const [file, content] of Object.entries(files)) {
      const blob = await git([gitDir, "hash-object", "-w", "--no-filters", "--stdin"], content);
      // A script is committed executable, as the real repository's are.
      const mode = Buffer.from(content).subarray(0, 2).toString() === "#!" ? "100755" : "100644";
      await git([gitDir, "update-index", "--add", "--cacheinfo", `${mode},${blob},${file}`], undefined, env);
    }
    const tree = await git([gitDir, "write-tree"], undefined, env);
    const sha = await git([gitDir, "commit-tree", tree, ...(parent ? ["-p", parent] : []), "-m", message]);
    // The old value guards against a push that moved master meanwhile ("" = must not exist yet).
    await git([gitDir, "update-ref", "refs/heads/master", sha, parent]);
    await rm(env.GIT_INDEX_FILE, { force: true });
    return sha;
  };

  const create = async (repo: string, files: Record<string, string | Buffer>, message: string) => {
    await git(["init", "--bare", "--quiet", "--initial-branch=master", `${root}/${repo}.git`]);
    // http-backend refuses pushes without it unless REMOTE_USER is set; the server decides who may push.
    await git([`--git-dir=${repo}.git`, "config", "http.receivepack", "true"]);
    await commit(repo, files, message);
  };

  const authenticate = (header: string | undefined) => {
    const basic = /^Basic\s+(\S+)$/i.exec(header ?? "");
    const [name, ...token] = Buffer.from(basic?.[1] ?? "", "base64")
      .toString()
      .split(":");
    return name && users.get(name) === token.join(":") ? name : undefined;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://stand-in");
    const entry: GitRequest = { method: req.method ?? "?", path: url.pathname, status: 0 };
    log.push(entry);
    const answer = (status: number, text: string, headers: http.OutgoingHttpHeaders = {}) => {
      entry.status = status;
      res.writeHead(status, { "content-type": "text/plain", ...headers }).end(`${text}\n`);
    };
    const pushing =
      url.pathname.endsWith("/git-receive-pack") || url.searchParams.get("service") === "git-receive-pack";

    const mirror = /^\/public\/infra\.git(\/.*)$/.exec(url.pathname);
    if (mirror) {
      if (pushing) return answer(403, "Forbidden: the public mirror is read only");
      return cgi(req, res, entry, `/infra.git${mirror[1]}`, url.search);
    }
    const forgejo = /^\/forgejo\/org\/([^/]+)\.git(\/.*)$/.exec(url.pathname);
    if (!forgejo) return answer(404, "Not Found");
    const user = authenticate(req.headers.authorization);
    if (!user) return answer(401, "Unauthorized", { "www-authenticate": 'Basic realm="forgejo stand-in"' });
    entry.user = user;
    const [, repo, rest] = forgejo;
    if (repo !== "infra" && !readers.get(repo!)?.includes(user)) return answer(404, "Not Found");
    cgi(req, res, entry, `/${repo}.git${rest}`, url.search, user);
  });

  const cgi = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    entry: GitRequest,
    pathInfo: string,
    search: string,
    user?: string,
  ) => {
    // Request headers as HTTP_*, as CGI does: http-backend needs HTTP_CONTENT_ENCODING
    // (gzip bodies) and HTTP_GIT_PROTOCOL (protocol v2). Never Proxy: HTTP_PROXY is a proxy setting.
    const headers = Object.entries(req.headers)
      .filter(([name]) => name !== "authorization" && name !== "proxy")
      .map(([name, value]) => [`HTTP_${name.toUpperCase().replaceAll("-", "_")}`, String(value)]);
    const child = spawn("git", ["http-backend"], {
      env: {
        ...GIT_ENV,
        ...Object.fromEntries(headers),
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: pathInfo,
        REQUEST_METHOD: req.method,
        QUERY_STRING: search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        // Without a length (a chunked push) http-backend reads the body to its end.
        ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
        ...(user ? { REMOTE_USER: user } : {}),
        REMOTE_ADDR: req.socket.remoteAddress ?? "",
      },
    });
    child.stdin.on("error", () => {}); // it may answer (an error) before reading the whole body
    req.pipe(child.stdin);
    res.on("close", () => !res.writableFinished && child.kill());
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", (error) => (stderr += error.message));
    let head = Buffer.alloc(0);
    const readHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = /\r?\n\r?\n/.exec(head.toString("latin1"));
      if (!end) return;
      child.stdout.off("data", readHead);
      entry.status = 200;
      for (const line of head.subarray(0, end.index).toString("latin1").split(/\r?\n/)) {
        const colon = line.indexOf(":");
        const [name, value] = [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
        if (name.toLowerCase() === "status") entry.status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(entry.status);
      res.write(head.subarray(end.index + end[0].length));
      child.stdout.pipe(res);
    };
    child.stdout.on("data", readHead);
    child.on("close", () => {
      if (res.headersSent || res.destroyed) return;
      entry.status = 500;
      res.writeHead(500, { "content-type": "text/plain" }).end(`git http-backend failed: ${stderr}\n`);
    });
  };

  await create("infra", { ...INFRA_FILES }, "Initial commit of infra");
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    publicInfraUrl: `${url}/public/infra.git`,
    forgejoInfraUrl: `${url}/forgejo/org/infra.git`,
    repoBase: `${url}/forgejo/org`,
    addUser: (name, token) => void users.set(name, token),
    async addRepo(name, repoReaders, files = { "README.md": `# ${name}\n` }) {
      if (!REPO_NAME.test(name) || name === "infra" || readers.has(name))
        throw new Error(`git stand-in: cannot add repository ${JSON.stringify(name)}`);
      await create(name, files, `Initial commit of ${name}`);
      readers.set(name, [...repoReaders]);
    },
    async commit(repo, files, message) {
      if (repo !== "infra" && !readers.has(repo))
        throw new Error(`git stand-in: no repository ${JSON.stringify(repo)}`);
      return commit(repo, files, message);
    },
    requests: () => log.map((entry) => ({ ...entry })),
    clearRequests: () => void (log = []),
    async [Symbol.asyncDispose]() {
      if (server.listening) {
        const closed = once(server, "close");
        server.close();
        server.closeAllConnections();
        await closed;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
