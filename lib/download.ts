// Downloads for stages: undici with timeouts and bounded retries, into a
// cache addressed by the expected hash, verified before anything is used.
// A second build (or a second stage asking for the same file) downloads
// nothing. A mismatch leaves nothing behind and names both hashes.
import { createHash } from "node:crypto";
import { createWriteStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { Agent, fetch } from "undici";
import type { BuildContext } from "./context.ts";
import { UserError } from "./errors.ts";
import { fetchError } from "./fetch-error.ts";
import { formatBytes, formatDuration, progressIntervals } from "./progress.ts";

/** What a download must hash to: a sha256 (hex) or an npm integrity (sha512-base64). */
export type Expected = { sha256: string } | { integrity: string };

const inFlight = new Map<string, Promise<string>>();
const RETRIES = 3;

/** The cached file for `expected`, downloading it from `url` when missing. */
export function download(ctx: Pick<BuildContext, "cacheDir" | "log" | "settings">, url: string, expected: Expected): Promise<string> {
  const { algorithm, hex } = digestOf(expected);
  const file = path.join(ctx.cacheDir, algorithm, hex);
  let pending = inFlight.get(file);
  if (!pending) {
    pending = fetchInto(ctx, url, file, algorithm, hex).finally(() => inFlight.delete(file));
    inFlight.set(file, pending);
  }
  return pending;
}

export function digestOf(expected: Expected): { algorithm: "sha256" | "sha512"; hex: string } {
  if ("sha256" in expected) return { algorithm: "sha256", hex: expected.sha256 };
  const match = /^sha512-(.+)$/.exec(expected.integrity);
  if (!match) throw new UserError(`unsupported integrity ${expected.integrity}`, "pins.json holds sha512 integrities; run `build.ts lock`");
  return { algorithm: "sha512", hex: Buffer.from(match[1]!, "base64").toString("hex") };
}

async function fetchInto(ctx: Pick<BuildContext, "log" | "settings">, url: string, file: string, algorithm: "sha256" | "sha512", hex: string): Promise<string> {
  if (existsSync(file)) return file;
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.part-${process.pid}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const received = await fetchToFile(ctx, url, temporary);
      const digest = received[algorithm];
      if (digest !== hex) {
        throw new UserError(
          `${url} does not match its pin: expected ${algorithm} ${hex}, received ${digest}`,
          "nothing was installed; if the new artifact is trusted, refresh the pin with `build.ts lock`",
        );
      }
      await rename(temporary, file);
      return file;
    } catch (error) {
      await rm(temporary, { force: true });
      if (error instanceof UserError || attempt >= RETRIES) throw error;
      ctx.log.info(`download of ${url} failed (${(error as Error).message}); retry ${attempt} of ${RETRIES - 1}`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** (attempt - 1)));
    }
  }
}

/**
 * Trust on first use, for `build.ts lock` only: downloads url without a pin
 * into the cache and returns where it is and what it hashes to.
 */
export async function downloadUnpinned(ctx: Pick<BuildContext, "cacheDir" | "log" | "settings">, url: string): Promise<{ file: string; sha256: string }> {
  await mkdir(path.join(ctx.cacheDir, "sha256"), { recursive: true });
  const temporary = path.join(ctx.cacheDir, "sha256", `unpinned.part-${process.pid}`);
  try {
    const { sha256 } = await fetchToFile(ctx, url, temporary);
    const file = path.join(ctx.cacheDir, "sha256", sha256);
    await rename(temporary, file);
    return { file, sha256 };
  } finally {
    await rm(temporary, { force: true });
  }
}

class HttpStatusError extends Error {}

/** Streams url into file, returning the hashes of what arrived. */
async function fetchToFile(ctx: Pick<BuildContext, "log" | "settings">, url: string, file: string): Promise<{ sha256: string; sha512: string }> {
  const response = await fetch(url, { dispatcher: agentFor(ctx.settings.extraCaCerts), redirect: "follow" }).catch((error: unknown) => {
    // A certificate problem comes back a UserError (hint: DEVVM_EXTRA_CA_CERTS), so it is not retried.
    throw fetchError(url, error);
  });
  if (!response.ok || !response.body) {
    const error = new HttpStatusError(`GET ${url}: HTTP ${response.status}`);
    // A 4xx will not get better by retrying.
    if (response.status >= 400 && response.status < 500) throw new UserError(error.message, "check the version in pins.json and the source address in the settings");
    throw error;
  }
  const sha256 = createHash("sha256");
  const sha512 = createHash("sha512");
  // Progress: the size at the start (when the server says it), bytes every few seconds, size and time at the end.
  const name = path.basename(new URL(url).pathname);
  const size = Number(response.headers.get("content-length")) || 0;
  const started = performance.now();
  let reported = started;
  let bytes = 0;
  ctx.log.info(size ? `downloading ${name} (${formatBytes(size)})` : `downloading ${name}`);
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  body.on("data", (chunk: Buffer) => {
    sha256.update(chunk);
    sha512.update(chunk);
    bytes += chunk.length;
    if (performance.now() - reported >= progressIntervals.downloadMs) {
      reported = performance.now();
      ctx.log.info(`downloading ${name}: ${(bytes / 1e6).toFixed(1)}${size ? ` of ${(size / 1e6).toFixed(1)}` : ""} MB`);
    }
  });
  await pipeline(body, createWriteStream(file, { mode: 0o644 }));
  ctx.log.info(`downloaded ${name}: ${formatBytes(bytes)} in ${formatDuration(performance.now() - started)}`);
  return { sha256: sha256.digest("hex"), sha512: sha512.digest("hex") };
}

const agents = new Map<string, Agent>();

/** An undici agent trusting the system's roots plus the configured extra CA certificates. */
export function agentFor(extraCaCerts: string[]): Agent {
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
  if (!existsSync(entry)) throw new UserError(`extra CA certificate ${entry} does not exist`, "fix DEVVM_EXTRA_CA_CERTS");
  if (!statSync(entry).isDirectory()) return [entry];
  return readdirSync(entry)
    .sort()
    .filter((n) => n.endsWith(".crt"))
    .map((n) => path.join(entry, n));
}
