// Reads one secret from Vault's KV v2 engine over HTTP (undici), without the
// vault CLI: GET <addr>/v1/<mount>/data/<path> with the X-Vault-Token header.
// The token travels in a header only, never on a command line, and only to
// VAULT_ADDR's origin: a redirect is followed by hand, to the same origin
// only (a standby's redirect to the active node elsewhere is refused, naming
// both). A token that is not a valid header value is never sent (undici's own
// error would quote it). Nothing read here is ever put into an error message:
// a failure names the address, the path and the HTTP status, never a body
// that could hold a secret. The body is read up to 1 MiB (BODY_LIMITS.secret).
import path from "node:path";
import { fetch, type Response } from "undici";
import type { BuildContext } from "../core/context.ts";
import { agentFor } from "./download.ts";
import { explainFetchFailure } from "./fetch-error.ts";
import { BodyTooLargeError, readBody } from "./http-body.ts";
import { UserError } from "../core/errors.ts";
import { readUserFile } from "../machine/safe-path.ts";
import { Secret, tokenProblem } from "../core/secret.ts";

export interface KvLocation {
  /** http(s)://host:port, no trailing slash. */
  address: string;
  mount: string;
  path: string;
}

/** Why a read did not give fields; each is a warning for vault-tokens, an error with --strict. */
export type KvReadResult =
  | { ok: true; fields: Map<string, Secret> }
  | {
      ok: false;
      problem: "unreachable" | "denied" | "not-found" | "redirected" | "bad-response" | "bad-token";
      message: string;
    };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
// Vault redirects once (standby to active); more is a loop.
const MAX_REDIRECTS = 3;

export async function readKvSecret(
  ctx: Pick<BuildContext, "settings" | "session">,
  location: KvLocation,
  token: Secret,
  timeoutMs = 10_000,
): Promise<KvReadResult> {
  const where = `${location.mount}/${location.path} at ${location.address}`;
  const invalid = tokenProblem(token.reveal());
  if (invalid)
    return {
      ok: false,
      problem: "bad-token",
      message: `the Vault token is not a valid header value (${invalid}); it was not sent to ${location.address}`,
    };
  const origin = new URL(location.address).origin;
  let url = `${location.address}/v1/${location.mount}/data/${location.path}`;
  // One deadline for the whole read, redirects and body included: a body that trickles forever ends too.
  const signal = AbortSignal.timeout(timeoutMs);
  let response: Response;
  for (let hop = 0; ; hop++) {
    try {
      response = await fetch(url, {
        headers: { "X-Vault-Token": token.reveal(), Accept: "application/json" },
        dispatcher: agentFor(ctx),
        signal,
        // Followed below, so the token never goes to another origin.
        redirect: "manual",
      });
    } catch (error) {
      return {
        ok: false,
        problem: "unreachable",
        message: `Vault at ${location.address} is unreachable ${failureReason(error)}`,
      };
    }
    if (!REDIRECTS.has(response.status)) break;
    await response.body?.cancel().catch(() => {});
    const next = redirectTarget(url, response.headers.get("location"));
    if (!next)
      return {
        ok: false,
        problem: "bad-response",
        message: `Vault answered HTTP ${response.status} for ${where} without a valid Location`,
      };
    if (next.origin !== origin) {
      return {
        ok: false,
        problem: "redirected",
        message: `Vault at ${origin} redirected the read of ${location.mount}/${location.path} to another origin, ${next.origin}; the token was not sent there (set VAULT_ADDR to the address that answers, e.g. the active node's)`,
      };
    }
    if (hop >= MAX_REDIRECTS)
      return {
        ok: false,
        problem: "bad-response",
        message: `Vault redirected the read of ${where} more than ${MAX_REDIRECTS} times`,
      };
    url = next.href;
  }
  if (response.status === 403)
    return discard(response, {
      ok: false,
      problem: "denied",
      message: `Vault refused the token for ${where} (HTTP 403)`,
    });
  if (response.status === 404)
    return discard(response, { ok: false, problem: "not-found", message: `Vault has no secret ${where} (HTTP 404)` });
  if (!response.ok)
    return discard(response, {
      ok: false,
      problem: "bad-response",
      message: `Vault answered HTTP ${response.status} for ${where}`,
    });
  let body: unknown;
  try {
    const bytes = await readBody(response, { what: `Vault's answer for ${where}`, kind: "secret" });
    // JSON.parse's message quotes the text it choked on: never shown.
    try {
      body = JSON.parse(bytes.toString("utf8"));
    } catch {
      return { ok: false, problem: "bad-response", message: `Vault's answer for ${where} is not JSON` };
    }
  } catch (error) {
    if (error instanceof BodyTooLargeError) return { ok: false, problem: "bad-response", message: error.message };
    return {
      ok: false,
      problem: "unreachable",
      message: `Vault's answer for ${where} could not be read ${failureReason(error)}`,
    };
  }
  const data = (body as { data?: { data?: unknown } } | null)?.data?.data;
  if (typeof data !== "object" || data === null)
    return {
      ok: false,
      problem: "bad-response",
      message: `Vault's answer for ${where} has no data.data (is ${location.mount} a KV v2 mount?)`,
    };
  const fields = new Map<string, Secret>();
  for (const [name, value] of Object.entries(data)) {
    // A JSON document stored as an object rather than a string is kept as JSON.
    if (value !== null && value !== undefined)
      fields.set(name, new Secret(typeof value === "string" ? value : `${JSON.stringify(value, null, 2)}\n`));
  }
  return { ok: true, fields };
}

/** The token found, or why there is none that can be sent (a warning for the callers, an error with --strict). */
export type VaultTokenLookup = { ok: true; token: Secret } | { ok: false; message: string };

/**
 * VAULT_TOKEN (checked by readSettings), else the admin's ~/.vault-token as
 * the vault CLI would find it, surrounding whitespace trimmed (its trailing
 * newline). A file token that is not a valid header value is refused, naming
 * the file, never its bytes.
 */
export async function vaultToken(ctx: BuildContext): Promise<VaultTokenLookup> {
  if (ctx.settings.vaultToken) return { ok: true, token: ctx.settings.vaultToken };
  const file = path.join(ctx.settings.adminHome, ".vault-token");
  let text = "";
  try {
    // Read like any file in a user's home (lib/machine/safe-path.ts): a link there is named, never followed.
    text = (readUserFile(ctx, file)?.toString("utf8") ?? "").trim();
  } catch (error) {
    // A link planted on the way (or a file where a folder should be) is named; any other unreadable file is no token, as before.
    if (error instanceof UserError) return { ok: false, message: error.message };
  }
  if (!text) return { ok: false, message: `no Vault token (VAULT_TOKEN unset, no ${file})` };
  // A Secret first, so even a refused token is scrubbed from whatever is printed.
  const token = new Secret(text);
  const invalid = tokenProblem(text);
  if (invalid)
    return {
      ok: false,
      message: `the Vault token in ${file} is not a valid header value (${invalid}); it was not sent`,
    };
  return { ok: true, token };
}

/** "(ECONNREFUSED)": why a request failed; an untrusted certificate adds the hint naming DEVVM_EXTRA_CA_CERTS (most likely a TLS-inspecting proxy). */
function failureReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const { hint, transient } = explainFetchFailure(error);
  const tls = !transient && hint?.includes("DEVVM_EXTRA_CA_CERTS") ? `; ${hint}` : "";
  return `(${cause?.code ?? cause?.message ?? (error as Error).message})${tls}`;
}

/** A redirect's Location as a URL, resolved against the request's. */
function redirectTarget(from: string, location: string | null): URL | undefined {
  if (!location) return undefined;
  try {
    return new URL(location, from);
  } catch {
    return undefined;
  }
}

/** Drops an unread body (Vault's error JSON is never shown) and returns the result. */
async function discard(response: Response, result: KvReadResult): Promise<KvReadResult> {
  await response.body?.cancel().catch(() => {});
  return result;
}
