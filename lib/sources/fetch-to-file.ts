// One HTTP GET streamed into a file, bounded and hashed on the way, with the
// agent that trusts the configured extra CA certificates.
import { createHash } from "node:crypto";
import { createWriteStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { Agent, fetch } from "undici";
import { SessionSlot } from "../core/build-session.ts";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { formatBytes, formatDuration, progressIntervals } from "../core/progress.ts";
import { fetchError } from "./fetch-error.ts";
import { ByteBudget, type BodyLimit } from "./http-body.ts";

class HttpStatusError extends Error {}

/**
 * Streams url into file, returning the hashes of what arrived. At most the
 * pinned size, else the artifact limit, is read: an endless body ends in a
 * BodyTooLargeError with the partial file removed by the caller.
 */
export async function fetchToFile(
  ctx: Pick<BuildContext, "log" | "settings" | "background" | "session">,
  url: string,
  file: string,
  limit: Pick<BodyLimit, "bytes" | "of">,
): Promise<{ sha256: string; sha512: string }> {
  // A download prepared in the background ends with the build (lib/core/background.ts).
  const signal = ctx.background?.signal;
  // No credential of the builder's goes out: nothing to carry to whatever host a redirect names. The one
  // header asks for the bytes as stored: an artifact is an archive already, and a registry that gzips it
  // on the fly (Verdaccio does, when asked as fetch asks by default) took 20 s instead of 0.4 s for Node.
  const response = await fetch(url, {
    dispatcher: agentFor(ctx),
    headers: { "accept-encoding": "identity" },
    redirect: "follow",
    ...(signal ? { signal } : {}),
  }).catch((error: unknown) => {
    // A certificate problem comes back a UserError (hint: DEVVM_EXTRA_CA_CERTS), so it is not retried.
    throw fetchError(url, error);
  });
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => {});
    const error = new HttpStatusError(`GET ${url}: HTTP ${response.status}`);
    // A 4xx will not get better by retrying.
    if (response.status >= 400 && response.status < 500)
      throw new UserError(error.message, "check the version in pins.json and the source address in the settings");
    throw error;
  }
  const budget = new ByteBudget({ what: `GET ${url}`, kind: "artifact", ...limit });
  try {
    budget.checkDeclared(response);
  } catch (error) {
    await response.body.cancel().catch(() => {});
    throw error;
  }
  const sha256 = createHash("sha256");
  const sha512 = createHash("sha512");
  // Progress: the size at the start (when the server says it), bytes every few seconds, size and time at the end.
  const name = path.basename(new URL(url).pathname);
  const size = Number(response.headers.get("content-length")) || 0;
  const started = performance.now();
  let reported = started;
  ctx.log.info(size ? `downloading ${name} (${formatBytes(size)})` : `downloading ${name}`);
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        budget.take(chunk.length);
      } catch (error) {
        done(error as Error);
        return;
      }
      sha256.update(chunk);
      sha512.update(chunk);
      if (performance.now() - reported >= progressIntervals.downloadMs) {
        reported = performance.now();
        ctx.log.info(
          `downloading ${name}: ${(budget.received / 1e6).toFixed(1)}${size ? ` of ${(size / 1e6).toFixed(1)}` : ""} MB`,
        );
      }
      done(null, chunk);
    },
  });
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  await pipeline(body, meter, createWriteStream(file, { mode: 0o644 }), ...(signal ? [{ signal }] : []));
  ctx.log.info(`downloaded ${name}: ${formatBytes(budget.received)} in ${formatDuration(performance.now() - started)}`);
  return { sha256: sha256.digest("hex"), sha512: sha512.digest("hex") };
}

// Connection pools, one per set of extra CA files, for one build: the CA
// files are read when the build first connects, not once per process.
const AGENTS = new SessionSlot(() => new Map<string, Agent>());

/** An undici agent trusting the system's roots plus the build's extra CA certificates (DEVVM_EXTRA_CA_CERTS). */
export function agentFor(ctx: Pick<BuildContext, "settings" | "session">): Agent {
  const { extraCaCerts } = ctx.settings;
  const agents = ctx.session.get(AGENTS);
  const key = extraCaCerts.join(":");
  let agent = agents.get(key);
  if (!agent) {
    const extra = extraCaCerts.flatMap(certificateFiles).map((f) => readFileSync(f, "utf8"));
    agent = new Agent({
      headersTimeout: 30_000,
      bodyTimeout: 60_000,
      connect: { timeout: 15_000, ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}) },
    });
    agents.set(key, agent);
  }
  return agent;
}

/** A CA setting names files, or folders whose *.crt files count. */
export function certificateFiles(entry: string): string[] {
  if (!existsSync(entry))
    throw new UserError(`extra CA certificate ${entry} does not exist`, "fix DEVVM_EXTRA_CA_CERTS");
  if (!statSync(entry).isDirectory()) return [entry];
  return readdirSync(entry)
    .sort()
    .filter((n) => n.endsWith(".crt"))
    .map((n) => path.join(entry, n));
}
