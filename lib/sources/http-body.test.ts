// Bounded reading of response bodies, against servers on 127.0.0.1 that send
// too much: an endless body stops at the limit with a clear error (the
// connection closed, so the server stops too), an announced size over the
// limit is refused before reading; and the registry's readers use it.
import { BuildSession } from "../core/build-session.ts";
import { fetch } from "undici";
import { describe, expect, it } from "vitest";
import { sendEndless, startHostileServer } from "../../test/support/stand-ins/hostile-server.ts";
import { BODY_LIMITS, BodyTooLargeError, MiB, readBody, readText } from "./http-body.ts";
import { versionInfo } from "./registry.ts";
import { readSettings } from "../inputs/settings.ts";

describe("readBody", () => {
  it("reads a body within its limit", async () => {
    await using server = await startHostileServer((_, response) => response.end('{"ok":true}'));
    expect(await readText(await fetch(server.url), { what: "GET test", kind: "secret" })).toBe('{"ok":true}');
  });

  it("stops an endless body at the limit, closes the connection and says so", async () => {
    await using server = await startHostileServer((_, response, state) => sendEndless(response, state));
    const error = await readBody(await fetch(`${server.url}/v1/secret/data/workstation`), {
      what: "GET /v1/secret/data/workstation",
      kind: "secret",
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyTooLargeError);
    expect((error as Error).message).toBe(
      "GET /v1/secret/data/workstation: the answer passed 1 MiB, the limit for a Vault secret; stopped reading there",
    );
    // Memory stays bounded: reading stopped within one chunk past the limit.
    expect((error as BodyTooLargeError).received).toBeGreaterThan(BODY_LIMITS.secret);
    expect((error as BodyTooLargeError).received).toBeLessThan(BODY_LIMITS.secret + MiB);
    // The server saw the client hang up: it wrote no more than the socket buffers hold past the limit.
    expect(await server.hungUp()).toBeLessThan(BODY_LIMITS.secret + 32 * MiB);
  });

  it("refuses an announced size over the limit before reading", async () => {
    await using server = await startHostileServer((_, response) => {
      response.writeHead(200, { "content-length": String(5 * MiB) });
      response.write(Buffer.alloc(1024));
    });
    const error = await readBody(await fetch(server.url), { what: "GET /-/SHASUMS256.txt", kind: "record" }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({
      received: 0,
      message:
        "GET /-/SHASUMS256.txt: the server announces 5242880 bytes (Content-Length), over the 4 MiB limit for a registry record or checksum list; not read",
    });
  });

  it("holds an artifact to its pinned size when one is given", async () => {
    // Without a Content-Length (chunked), so the count decides.
    await using server = await startHostileServer((_, response) => {
      response.write(Buffer.alloc(600));
      response.end(Buffer.alloc(401));
    });
    await expect(
      readBody(await fetch(server.url), { what: "GET kubectl", kind: "artifact", bytes: 1000 }),
    ).rejects.toThrow(
      "GET kubectl: the answer passed 1000 bytes, the limit for a download of its pinned size; stopped reading there",
    );
    expect(
      (await readBody(await fetch(server.url), { what: "GET kubectl", kind: "artifact", bytes: 1001 })).length,
    ).toBe(1001);
  });
});

describe("the registry's readers", () => {
  const context = (url: string) => ({
    settings: readSettings({ DEVVM_NPM_REGISTRY: url }),
    log: { info: () => {}, debug: () => {} },
    session: new BuildSession(),
  });

  it("stops an endless version record at the record limit", async () => {
    await using server = await startHostileServer((_, response, state) => sendEndless(response, state));
    await expect(versionInfo(context(server.url), "t3", "0.0.26")).rejects.toThrow(
      `GET ${server.url}/t3/0.0.26: the answer passed 4 MiB, the limit for a registry record or checksum list; stopped reading there`,
    );
    expect(await server.hungUp()).toBeLessThan(BODY_LIMITS.record + 32 * MiB);
  });

  it("sends no credentials, and follows a redirect without any", async () => {
    await using other = await startHostileServer((_, response) =>
      response.end(JSON.stringify({ version: "0.0.26", dist: { tarball: "x" } })),
    );
    await using server = await startHostileServer((_, response) =>
      response.writeHead(302, { location: `${other.url}/moved` }).end(),
    );
    expect((await versionInfo(context(server.url), "t3", "0.0.26")).version).toBe("0.0.26");
    for (const { headers } of [...server.requests, ...other.requests]) {
      expect(Object.keys(headers)).not.toEqual(expect.arrayContaining(["authorization"]));
      expect(headers).not.toHaveProperty("cookie");
      expect(headers).not.toHaveProperty("x-vault-token");
    }
    expect(other.requests).toHaveLength(1);
  });
});
