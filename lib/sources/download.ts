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
import { createReadStream, existsSync } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { SessionSlot } from "../core/build-session.ts";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { fetchToFile } from "./fetch-to-file.ts";
import { ARTIFACT_LIMITS, type PinnedArtifact } from "./http-body.ts";
import { sweepPartials } from "./partial-downloads.ts";

export { agentFor, certificateFiles } from "./fetch-to-file.ts";
export { sweepPartials } from "./partial-downloads.ts";

/**
 * What a download must hash to: a sha256 (hex) or an npm integrity
 * (sha512-base64). `size`, when a pin gives it, is the most that is read;
 * else `of`'s entry in ARTIFACT_LIMITS; else the general artifact limit.
 */
export type Expected = ({ sha256: string } | { integrity: string }) & { size?: number; of?: PinnedArtifact };

type DownloadContext = Pick<BuildContext, "cacheDir" | "log" | "settings" | "background" | "session">;

/** A build's downloads: those in flight, the cached files hashed again (a second use does not hash twice). */
const DOWNLOADS = new SessionSlot(() => ({
  inFlight: new Map<string, Promise<string>>(),
  verified: new Set<string>(),
  unpinnedCount: 0,
}));
const RETRIES = 3;

/** The cached file for `expected`, downloading it from `url` when missing. */
export function download(ctx: DownloadContext, url: string, expected: Expected): Promise<string> {
  const { algorithm, hex } = digestOf(expected);
  const file = path.join(ctx.cacheDir, algorithm, hex);
  const { inFlight } = ctx.session.get(DOWNLOADS);
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
    if (await cachedFileMatches(ctx, file, algorithm, hex, expected.size)) return file;
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
      ctx.session.get(DOWNLOADS).verified.add(file);
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

/** A cached file still hashes to its name (and has its pinned size): checked once per build. */
async function cachedFileMatches(
  ctx: Pick<BuildContext, "session">,
  file: string,
  algorithm: "sha256" | "sha512",
  hex: string,
  size: number | undefined,
): Promise<boolean> {
  const { verified } = ctx.session.get(DOWNLOADS);
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
  const temporary = path.join(
    ctx.cacheDir,
    "sha256",
    `unpinned-${++ctx.session.get(DOWNLOADS).unpinnedCount}.part-${process.pid}`,
  );
  try {
    const { sha256 } = await fetchToFile(ctx, url, temporary, { bytes: ARTIFACT_LIMITS[of], of });
    // Named by the hash it has: verified by construction.
    const file = path.join(ctx.cacheDir, "sha256", sha256);
    await rename(temporary, file);
    ctx.session.get(DOWNLOADS).verified.add(file);
    return { file, sha256 };
  } finally {
    await rm(temporary, { force: true });
  }
}
