// Downloads for stages: undici with timeouts and bounded retries, into a
// cache addressed by the expected hash, verified before anything is used.
// A second build (or a second stage asking for the same file) downloads
// nothing. A mismatch leaves nothing behind and names both hashes.
// The cache holds only verified files: a download is written as
// `<hex>.part-PID` and renamed only once its hash matched; what a killed
// build left (`.part-PID` of a process that is gone) is removed before the
// first download of the next; a cached file is hashed again before its first
// use in a build, and one that no longer matches is replaced.
// Downloads carry no credentials (no Authorization, no token, no cookie), so
// they may follow redirects anywhere (GitHub's release assets live on another
// host): the pinned hash decides what is used, not where it came from.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { Agent, fetch } from "undici";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { fetchError } from "./fetch-error.ts";
import { ARTIFACT_LIMITS, ByteBudget, type BodyLimit, type PinnedArtifact } from "./http-body.ts";
import { formatBytes, formatDuration, progressIntervals } from "../core/progress.ts";
import { processRuns } from "../machine/leftovers.ts";

/**
 * What a download must hash to: a sha256 (hex) or an npm integrity
 * (sha512-base64). `size`, when a pin gives it, is the most that is read;
 * else `of`'s entry in ARTIFACT_LIMITS; else the general artifact limit.
 */
export type Expected = ({ sha256: string } | { integrity: string }) & { size?: number; of?: PinnedArtifact };

type DownloadContext = Pick<BuildContext, "cacheDir" | "log" | "settings" | "background">;

const inFlight = new Map<string, Promise<string>>();
// Cached files hashed again in this process, so a second use does not hash twice.
const verified = new Set<string>();
const RETRIES = 3;

/** The cached file for `expected`, downloading it from `url` when missing. */
export function download(ctx: DownloadContext, url: string, expected: Expected): Promise<string> {
  const { algorithm, hex } = digestOf(expected);
  const file = path.join(ctx.cacheDir, algorithm, hex);
  let pending = inFlight.get(file);
  if (!pending) {
    pending = sweepPartials(ctx)
      .then(() => fetchInto(ctx, url, file, algorithm, hex, expected))
      .finally(() => inFlight.delete(file));
    inFlight.set(file, pending);
  }
  return pending;
}

export function digestOf(expected: Expected): { algorithm: "sha256" | "sha512"; hex: string } {
  if ("sha256" in expected) return { algorithm: "sha256", hex: expected.sha256 };
  const match = /^sha512-(.+)$/.exec(expected.integrity);
  if (!match)
    throw new UserError(
      `unsupported integrity ${expected.integrity}`,
      "pins.json holds sha512 integrities; run `build.ts lock`",
    );
  return { algorithm: "sha512", hex: Buffer.from(match[1]!, "base64").toString("hex") };
}

async function fetchInto(
  ctx: DownloadContext,
  url: string,
  file: string,
  algorithm: "sha256" | "sha512",
  hex: string,
  expected: Expected,
): Promise<string> {
  if (existsSync(file)) {
    if (await cachedFileMatches(file, algorithm, hex, expected.size)) return file;
    ctx.log.info(
      `the cached ${path.basename(new URL(url).pathname)} (${file}) no longer matches its pin; removed, downloading it again`,
    );
    await rm(file, { recursive: true, force: true });
  }
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.part-${process.pid}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const limit =
        expected.size !== undefined
          ? { bytes: expected.size }
          : expected.of
            ? { bytes: ARTIFACT_LIMITS[expected.of], of: expected.of }
            : {};
      const received = await fetchToFile(ctx, url, temporary, limit);
      const digest = received[algorithm];
      if (digest !== hex) {
        throw new UserError(
          `${url} does not match its pin: expected ${algorithm} ${hex}, received ${digest}`,
          "nothing was installed; if the new artifact is trusted, refresh the pin with `build.ts lock`",
        );
      }
      // Renamed only now, verified: the cache never holds a file under a hash it does not have.
      await rename(temporary, file);
      verified.add(file);
      return file;
    } catch (error) {
      await rm(temporary, { force: true });
      // Stopped at the build's end (it was prepared for a stage that did not run): not a failure to retry.
      if (error instanceof UserError || attempt >= RETRIES || ctx.background?.signal.aborted) throw error;
      ctx.log.info(`download of ${url} failed (${(error as Error).message}); retry ${attempt} of ${RETRIES - 1}`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** (attempt - 1)));
    }
  }
}

/** A cached file still hashes to its name (and has its pinned size): checked once per process. */
async function cachedFileMatches(
  file: string,
  algorithm: "sha256" | "sha512",
  hex: string,
  size: number | undefined,
): Promise<boolean> {
  if (verified.has(file)) return true;
  try {
    const info = await stat(file);
    if (!info.isFile() || (size !== undefined && info.size !== size)) return false;
    const hash = createHash(algorithm);
    await pipeline(createReadStream(file), hash);
    if (hash.digest("hex") !== hex) return false;
  } catch {
    return false;
  }
  verified.add(file);
  return true;
}

let unpinnedCount = 0;

/**
 * Trust on first use, for `build.ts lock` only: downloads url without a pin
 * into the cache and returns where it is and what it hashes to.
 */
export async function downloadUnpinned(
  ctx: DownloadContext,
  url: string,
  of: PinnedArtifact,
): Promise<{ file: string; sha256: string }> {
  await sweepPartials(ctx);
  await mkdir(path.join(ctx.cacheDir, "sha256"), { recursive: true });
  // The lock fetches kubelogin and kubectl at once: each its own partial file.
  const temporary = path.join(ctx.cacheDir, "sha256", `unpinned-${++unpinnedCount}.part-${process.pid}`);
  try {
    const { sha256 } = await fetchToFile(ctx, url, temporary, { bytes: ARTIFACT_LIMITS[of], of });
    // Named by the hash it has: verified by construction.
    const file = path.join(ctx.cacheDir, "sha256", sha256);
    await rename(temporary, file);
    verified.add(file);
    return { file, sha256 };
  } finally {
    await rm(temporary, { force: true });
  }
}

const sweeps = new Map<string, Promise<void>>();
// No download is silent this long (undici gives up on a body after a minute): its writer is gone, whatever runs under its pid now.
const PARTIAL_STALE_MS = 60 * 60_000;

/**
 * Removes the partial downloads a killed build (or bootstrap.sh) left in the
 * cache, once per process and before its first download: every
 * `<algorithm>/*.part-PID` whose process no longer runs. One with a live pid
 * is kept (a `build.ts lock` beside a build), unless nothing wrote to it for
 * an hour (the pid was reused).
 */
export function sweepPartials(ctx: Pick<BuildContext, "cacheDir" | "log">): Promise<void> {
  let sweep = sweeps.get(ctx.cacheDir);
  if (!sweep) {
    sweep = removeStalePartials(ctx);
    sweeps.set(ctx.cacheDir, sweep);
  }
  return sweep;
}

async function removeStalePartials(ctx: Pick<BuildContext, "cacheDir" | "log">): Promise<void> {
  const removed: string[] = [];
  for (const folder of await readdir(ctx.cacheDir).catch(() => [])) {
    for (const name of await readdir(path.join(ctx.cacheDir, folder)).catch(() => [])) {
      const pid = Number(/\.part-(\d+)$/.exec(name)?.[1]);
      if (!pid) continue;
      const file = path.join(ctx.cacheDir, folder, name);
      if (!(await partialIsStale(file, pid))) continue;
      await rm(file, { recursive: true, force: true });
      removed.push(path.join(folder, name));
    }
  }
  if (removed.length > 0)
    ctx.log.info(
      `removed ${removed.length} partial download${removed.length === 1 ? "" : "s"} a killed build left in ${ctx.cacheDir}: ${removed.join(", ")}`,
    );
}

async function partialIsStale(file: string, pid: number): Promise<boolean> {
  // This process has written nothing yet: a partial under its pid is a dead process's, the pid reused.
  if (pid === process.pid || !processRuns(pid)) return true;
  const modified = await stat(file).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  return Date.now() - modified > PARTIAL_STALE_MS;
}

class HttpStatusError extends Error {}

/**
 * Streams url into file, returning the hashes of what arrived. At most the
 * pinned size, else the artifact limit, is read: an endless body ends in a
 * BodyTooLargeError with the partial file removed by the caller.
 */
async function fetchToFile(
  ctx: Pick<BuildContext, "log" | "settings" | "background">,
  url: string,
  file: string,
  limit: Pick<BodyLimit, "bytes" | "of">,
): Promise<{ sha256: string; sha512: string }> {
  // A download prepared in the background ends with the build (lib/core/background.ts).
  const signal = ctx.background?.signal;
  // No headers of the builder's own: nothing that could carry a credential to whatever host a redirect names.
  const response = await fetch(url, {
    dispatcher: agentFor(ctx.settings.extraCaCerts),
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
  if (!existsSync(entry))
    throw new UserError(`extra CA certificate ${entry} does not exist`, "fix DEVVM_EXTRA_CA_CERTS");
  if (!statSync(entry).isDirectory()) return [entry];
  return readdirSync(entry)
    .sort()
    .filter((n) => n.endsWith(".crt"))
    .map((n) => path.join(entry, n));
}
