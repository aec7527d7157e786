// The git stand-in (the org's public infra repository and Forgejo), checked
// from outside with the real git CLI, as the devvm will use it. Host only,
// no containers: `npx vitest run --project slow test/support/stand-ins/git-server.test.ts`.
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { INFRA_FILES, INFRA_SECRET_CIPHERTEXT, startGitStandIn, type GitStandIn } from "./git-server.ts";
import { runCommand } from "./run-command.ts";

const LOCKED = [
  "-c",
  "filter.git-crypt.smudge=cat",
  "-c",
  "filter.git-crypt.clean=cat",
  "-c",
  "filter.git-crypt.required=false",
];

describe("git stand-in", () => {
  let server: GitStandIn;
  let work: string;
  let home: string;
  let dirs = 0;
  // A HOME of its own and no system config, so the host's git config plays no part; never a prompt.
  const env = () => ({ PATH: process.env.PATH, HOME: home, GIT_CONFIG_NOSYSTEM: "1", GIT_TERMINAL_PROMPT: "0" });
  const git = async (args: string[], cwd = work, extraEnv: NodeJS.ProcessEnv = {}) =>
    (await runCommand("git", args, { cwd, env: { ...env(), ...extraEnv }, timeoutMs: 60_000 })).stdout.trim();
  const fresh = () => path.join(work, `clone-${dirs++}`);
  const withCredentials = (url: string, user: string, token: string) =>
    url.replace("http://", `http://${user}:${token}@`);
  const cloneOf = async (url: string) => {
    const clone = fresh();
    await git(["clone", "-q", url, clone]);
    return clone;
  };
  const commitIn = async (clone: string, file: string, content: string | Buffer) => {
    await writeFile(path.join(clone, file), content);
    await git(["add", file], clone);
    await git(["commit", "-q", "-m", `change ${file}`], clone);
    return git(["rev-parse", "HEAD"], clone);
  };

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), "git-stand-in-test-"));
    home = path.join(work, "home");
    await mkdir(home);
    await writeFile(path.join(home, ".gitconfig"), "[user]\n\tname = Tester\n\temail = tester@example.invalid\n");
    server = await startGitStandIn();
    server.addUser("alice", "alice-token");
    server.addUser("bob", "bob-token");
    await server.addRepo("devvm", ["alice"], { "README.md": "# devvm\n" });
  });
  afterAll(async () => {
    await server?.[Symbol.asyncDispose]();
    await rm(work, { recursive: true, force: true });
  });
  beforeEach(() => server.clearRequests());

  it("serves the public infra without credentials, ciphertext intact, on master", async () => {
    expect(server.publicInfraUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/public\/infra\.git$/);
    const clone = fresh();
    await git([...LOCKED, "clone", "-q", server.publicInfraUrl, clone]);
    expect(await readFile(path.join(clone, "secrets/prod.env"))).toEqual(INFRA_SECRET_CIPHERTEXT);
    expect(INFRA_SECRET_CIPHERTEXT.subarray(0, 10).toString("latin1")).toBe("\0GITCRYPT\0");
    expect(await readFile(path.join(clone, ".gitattributes"), "utf8")).toBe(
      "secrets/** filter=git-crypt diff=git-crypt\n",
    );
    expect(await readFile(path.join(clone, "README.md"), "utf8")).toBe(INFRA_FILES["README.md"]);
    expect((await stat(path.join(clone, "scripts/hello.sh"))).mode & 0o111).toBe(0o111);
    expect(await git(["symbolic-ref", "HEAD"], clone)).toBe("refs/heads/master");
    expect(await git(["rev-list", "--count", "HEAD"], clone)).toBe("1");
    const requests = server.requests();
    expect(requests.length).toBeGreaterThan(0);
    for (const request of requests)
      expect(request).toEqual({
        method: expect.any(String),
        path: expect.stringMatching(/^\/public\/infra\.git\//),
        status: 200,
      });
  });

  it("refuses a push to the public URL with 403", async () => {
    const clone = await cloneOf(server.publicInfraUrl);
    await commitIn(clone, "new.txt", "new\n");
    server.clearRequests();
    await expect(git(["push", "origin", "master"], clone)).rejects.toThrow(/403/);
    expect(server.requests()).toEqual([{ method: "GET", path: "/public/infra.git/info/refs", status: 403 }]);
  });

  it("asks for a known user's token on Forgejo's infra, where a push shows on the public URL too", async () => {
    await expect(git(["clone", "-q", server.forgejoInfraUrl, fresh()])).rejects.toThrow(/terminal prompts disabled/);
    expect(server.requests()).toEqual([{ method: "GET", path: "/forgejo/org/infra.git/info/refs", status: 401 }]);
    server.clearRequests();
    await expect(
      git(["clone", "-q", withCredentials(server.forgejoInfraUrl, "alice", "wrong"), fresh()]),
    ).rejects.toThrow(/Authentication failed/);
    expect(server.requests().every((r) => r.status === 401 && r.user === undefined)).toBe(true);

    const clone = await cloneOf(withCredentials(server.forgejoInfraUrl, "bob", "bob-token"));
    const sha = await commitIn(clone, "from-bob.txt", "hello\n");
    server.clearRequests();
    await git(["push", "-q", "origin", "master"], clone);
    expect(server.requests()).toContainEqual({
      method: "POST",
      path: "/forgejo/org/infra.git/git-receive-pack",
      user: "bob",
      status: 200,
    });

    expect(await git(["ls-remote", server.publicInfraUrl, "refs/heads/master"])).toBe(`${sha}\trefs/heads/master`);
    const mirror = await cloneOf(server.publicInfraUrl);
    expect(await git(["rev-parse", "origin/master"], mirror)).toBe(sha);
  });

  it("lets only its readers clone a private repository; others get 404, a wrong token 401", async () => {
    const url = `${server.repoBase}/devvm.git`;
    const clone = fresh();
    await git(["clone", "-q", withCredentials(url, "alice", "alice-token"), clone]);
    expect(await readFile(path.join(clone, "README.md"), "utf8")).toBe("# devvm\n");
    expect(server.requests()).toContainEqual({
      method: "POST",
      path: "/forgejo/org/devvm.git/git-upload-pack",
      user: "alice",
      status: 200,
    });

    server.clearRequests();
    await expect(git(["clone", "-q", withCredentials(url, "bob", "bob-token"), fresh()])).rejects.toThrow(/not found/);
    expect(server.requests()).toContainEqual({
      method: "GET",
      path: "/forgejo/org/devvm.git/info/refs",
      user: "bob",
      status: 404,
    });

    server.clearRequests();
    await expect(git(["clone", "-q", withCredentials(url, "alice", "bob-token"), fresh()])).rejects.toThrow(
      /Authentication failed/,
    );
    expect(server.requests()).toContainEqual({ method: "GET", path: "/forgejo/org/devvm.git/info/refs", status: 401 });
    expect(server.requests().every((r) => r.status === 401 && r.user === undefined)).toBe(true);
    await expect(
      git(["ls-remote", withCredentials(`${server.repoBase}/nothing.git`, "alice", "alice-token")]),
    ).rejects.toThrow(/not found/);
  });

  it("authenticates through git's store credential helper, never a prompt", async () => {
    const storeHome = path.join(work, "store-home");
    await mkdir(storeHome);
    await writeFile(
      path.join(storeHome, ".git-credentials"),
      `${withCredentials(server.url, "alice", "alice-token")}\n`,
      { mode: 0o600 },
    );
    const clone = fresh();
    await git(["-c", "credential.helper=store", "clone", "-q", `${server.repoBase}/devvm.git`, clone], work, {
      HOME: storeHome,
    });
    expect(await readFile(path.join(clone, "README.md"), "utf8")).toBe("# devvm\n");
    expect(server.requests()).toContainEqual({
      method: "GET",
      path: "/forgejo/org/devvm.git/info/refs",
      user: "alice",
      status: 200,
    });
  });

  it("commit() adds a commit on master that ls-remote shows", async () => {
    const sha = await server.commit(
      "devvm",
      { "docs/notes.md": "notes\n", "bin/run": Buffer.from("#!/bin/sh\n") },
      "Add notes",
    );
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    const refs = await git(["ls-remote", withCredentials(`${server.repoBase}/devvm.git`, "alice", "alice-token")]);
    expect(refs.split("\n")).toEqual([`${sha}\tHEAD`, `${sha}\trefs/heads/master`]);
    const clone = await cloneOf(withCredentials(`${server.repoBase}/devvm.git`, "alice", "alice-token"));
    expect(await git(["log", "--format=%s", "master"], clone)).toBe("Add notes\nInitial commit of devvm");
    expect(await readFile(path.join(clone, "README.md"), "utf8")).toBe("# devvm\n");
  });

  it("makes the same shas on every run", async () => {
    await using one = await startGitStandIn();
    await using two = await startGitStandIn();
    const master = async (stand: GitStandIn) =>
      (await git(["ls-remote", stand.publicInfraUrl, "refs/heads/master"])).split("\t")[0];
    expect(await master(one)).toBe(await master(two));
    expect(await one.commit("infra", { "a.txt": "a\n" }, "A")).toBe(await two.commit("infra", { "a.txt": "a\n" }, "A"));
  });

  it("takes gzipped and chunked request bodies", async () => {
    // A gzipped upload-pack request, as git sends one past 1 KiB (whether a fetch gets there
    // depends on git's negotiation, so it is made here by hand).
    const [want] = (await git(["ls-remote", server.publicInfraUrl, "refs/heads/master"])).split("\t");
    const pkt = (line: string) => `${(line.length + 4).toString(16).padStart(4, "0")}${line}`;
    const body = gzipSync(`${pkt(`want ${want} side-band-64k ofs-delta\n`)}0000${pkt("done\n")}`);
    const answer = await fetch(`${server.publicInfraUrl}/git-upload-pack`, {
      method: "POST",
      headers: {
        "content-type": "application/x-git-upload-pack-request",
        "content-encoding": "gzip",
        accept: "application/x-git-upload-pack-result",
      },
      body,
    });
    expect(answer.status).toBe(200);
    const pack = Buffer.from(await answer.arrayBuffer());
    expect(pack.subarray(0, 8).toString()).toBe("0008NAK\n");
    expect(pack.includes("PACK")).toBe(true);

    // And a real fetch after many local commits still works, whatever git's negotiation sends.
    const clone = await cloneOf(withCredentials(server.forgejoInfraUrl, "alice", "alice-token"));
    for (let i = 0; i < 60; i++) await git(["commit", "-q", "--allow-empty", "-m", `local ${i}`], clone);
    const upstream = await server.commit("infra", { "upstream.txt": "upstream\n" }, "Upstream change");
    await git(["fetch", "origin"], clone);
    expect(await git(["rev-parse", "origin/master"], clone)).toBe(upstream);

    // A push larger than http.postBuffer goes chunked, without a Content-Length.
    await git(["reset", "-q", "--hard", "origin/master"], clone);
    const sha = await commitIn(clone, "big.bin", randomBytes(3 * 1024 * 1024));
    const pushed = await runCommand("git", ["push", "origin", "master"], {
      cwd: clone,
      env: { ...env(), GIT_TRACE_CURL: "1", GIT_TRACE_CURL_NO_DATA: "1" },
    });
    expect(pushed.stderr).toMatch(/Send header: Transfer-Encoding: chunked/i);
    expect(await git(["ls-remote", server.publicInfraUrl, "refs/heads/master"])).toBe(`${sha}\trefs/heads/master`);
  });
});
