import { BuildSession } from "../core/build-session.ts";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { download, downloadUnpinned } from "./download.ts";
import { UserError } from "../core/errors.ts";
import { explainFetchFailure, fetchError, TransientFetchError } from "./fetch-error.ts";
import { versionInfo } from "./registry.ts";
import { Secret } from "../core/secret.ts";
import { readSettings } from "../inputs/settings.ts";
import { readKvSecret } from "./vault-kv.ts";

/** What undici throws: "fetch failed", the reason in its cause. */
const undiciError = (code: string, message = code) =>
  new TypeError("fetch failed", { cause: Object.assign(new Error(message), { code }) });

describe("explainFetchFailure", () => {
  it.each([
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "DEPTH_ZERO_SELF_SIGNED_CERT",
    "CERT_HAS_EXPIRED",
    "ERR_TLS_CERT_ALTNAME_INVALID",
  ])("names DEVVM_EXTRA_CA_CERTS for %s, and does not retry it", (code) => {
    const failure = explainFetchFailure(undiciError(code, "certificate trouble"));
    expect(failure).toMatchObject({
      transient: false,
      reason: `the server's TLS certificate is not trusted: certificate trouble (${code})`,
    });
    expect(failure.hint).toContain("set DEVVM_EXTRA_CA_CERTS to its certificate file");
  });

  it("says what a refused connection, an unknown host and a timeout are; only the host is not retried", () => {
    expect(explainFetchFailure(undiciError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9"))).toMatchObject({
      transient: true,
      reason: "the connection was refused (ECONNREFUSED): nothing listens there",
    });
    expect(explainFetchFailure(undiciError("ENOTFOUND"))).toMatchObject({
      transient: false,
      reason: "the host name does not resolve (ENOTFOUND)",
    });
    expect(explainFetchFailure(undiciError("UND_ERR_CONNECT_TIMEOUT", "Connect Timeout Error"))).toMatchObject({
      transient: true,
      reason: "timed out: Connect Timeout Error (UND_ERR_CONNECT_TIMEOUT)",
    });
    expect(
      explainFetchFailure(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    ).toMatchObject({ transient: true, reason: expect.stringMatching(/^timed out/) });
    // Node's happy eyeballs: one error per address, the code on the aggregate.
    const aggregate = new TypeError("fetch failed", {
      cause: Object.assign(new AggregateError([new Error("connect ECONNREFUSED ::1:9")]), { code: "ECONNREFUSED" }),
    });
    expect(explainFetchFailure(aggregate).reason).toContain("ECONNREFUSED");
  });

  it("makes a UserError with the hint of what retrying cannot mend, a TransientFetchError of the rest", () => {
    const tls = fetchError(
      "https://registry.example/t3",
      undiciError("SELF_SIGNED_CERT_IN_CHAIN", "self-signed certificate in certificate chain"),
    );
    expect(tls).toBeInstanceOf(UserError);
    expect(tls.message).toBe(
      "GET https://registry.example/t3: the server's TLS certificate is not trusted: self-signed certificate in certificate chain (SELF_SIGNED_CERT_IN_CHAIN)",
    );
    expect(tls.hint).toContain("DEVVM_EXTRA_CA_CERTS");
    expect(fetchError("http://127.0.0.1:9/", undiciError("ECONNREFUSED"))).toBeInstanceOf(TransientFetchError);
  });
});

describe("a download from a server whose certificate is not trusted (a TLS-inspecting proxy)", () => {
  const BODY = Buffer.from("the artifact\n");
  const SHA256 = createHash("sha256").update(BODY).digest("hex");
  let dir: string;
  let certificate: string;
  let url: string;
  let handshakes = 0;
  let close: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "devvm-tls-"));
    certificate = path.join(dir, "proxy-ca.crt");
    const key = path.join(dir, "proxy.key");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        certificate,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    const server = createServer({ key: readFileSync(key), cert: readFileSync(certificate) }, (request, response) => {
      if (request.url?.startsWith("/v1/"))
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ data: { data: { field: "x" } } }));
      else if (request.url?.startsWith("/t3/"))
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ version: "0.0.26", dist: { tarball: "x" } }));
      else response.end(BODY);
    });
    server.on("tlsClientError", () => handshakes++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => new Promise((resolve) => server.close(() => resolve()));
  });
  afterAll(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  const context = (extraCaCerts?: string) => ({
    settings: readSettings({
      DEVVM_NPM_REGISTRY: url,
      ...(extraCaCerts ? { DEVVM_EXTRA_CA_CERTS: extraCaCerts } : {}),
    }),
    cacheDir: mkdtempSync(path.join(dir, "cache-")),
    log: { info: () => {}, debug: () => {} },
    session: new BuildSession(),
  });

  it("fails at once, naming DEVVM_EXTRA_CA_CERTS, instead of retrying", async () => {
    const before = handshakes;
    const error = await download(context(), `${url}/artifact`, { sha256: SHA256 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).message).toMatch(
      /^GET https:\/\/127\.0\.0\.1:\d+\/artifact: the server's TLS certificate is not trusted: .*\(DEPTH_ZERO_SELF_SIGNED_CERT\)$/,
    );
    expect((error as UserError).hint).toContain("set DEVVM_EXTRA_CA_CERTS to its certificate file");
    expect(handshakes - before).toBe(1);
  });

  it("names DEVVM_EXTRA_CA_CERTS for the lock's downloads, the registry and Vault too", async () => {
    await expect(downloadUnpinned(context(), `${url}/artifact`, "kubectl's binary")).rejects.toMatchObject({
      hint: expect.stringContaining("DEVVM_EXTRA_CA_CERTS"),
    });
    await expect(versionInfo(context(), "t3", "0.0.26")).rejects.toMatchObject({
      hint: expect.stringContaining("DEVVM_EXTRA_CA_CERTS"),
    });
    const vault = await readKvSecret(
      context(),
      { address: url, mount: "secret", path: "workstation" },
      new Secret("hvs.test"),
    );
    expect(vault).toMatchObject({
      ok: false,
      problem: "unreachable",
      message: expect.stringContaining("set DEVVM_EXTRA_CA_CERTS"),
    });
  });

  it("succeeds once DEVVM_EXTRA_CA_CERTS names the proxy's certificate", async () => {
    const ctx = context(certificate);
    expect(readFileSync(await download(ctx, `${url}/artifact`, { sha256: SHA256 })).equals(BODY)).toBe(true);
    expect((await versionInfo(ctx, "t3", "0.0.26")).version).toBe("0.0.26");
    expect(
      await readKvSecret(ctx, { address: url, mount: "secret", path: "workstation" }, new Secret("hvs.test")),
    ).toMatchObject({ ok: true });
  });
});
