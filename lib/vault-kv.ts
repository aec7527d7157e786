// Reads one secret from Vault's KV v2 engine over HTTP (undici), without the
// vault CLI: GET <addr>/v1/<mount>/data/<path> with the X-Vault-Token header.
// The token travels in a header only, never on a command line. Nothing read
// here is ever put into an error message: a failure names the address, the
// path and the HTTP status, never a body that could hold a secret.
import { promises as fs } from "node:fs";
import path from "node:path";
import { fetch } from "undici";
import { hostPath, type BuildContext } from "./context.ts";
import { agentFor } from "./download.ts";
import { explainFetchFailure } from "./fetch-error.ts";
import { Secret } from "./secret.ts";

export interface KvLocation {
  /** http(s)://host:port, no trailing slash. */
  address: string;
  mount: string;
  path: string;
}

/** Why a read did not give fields; each is a warning for vault-tokens, an error with --strict. */
export type KvReadResult =
  | { ok: true; fields: Map<string, Secret> }
  | { ok: false; problem: "unreachable" | "denied" | "not-found" | "bad-response"; message: string };

export async function readKvSecret(location: KvLocation, token: Secret, extraCaCerts: string[], timeoutMs = 10_000): Promise<KvReadResult> {
  const url = `${location.address}/v1/${location.mount}/data/${location.path}`;
  let response;
  try {
    response = await fetch(url, {
      headers: { "X-Vault-Token": token.reveal(), Accept: "application/json" },
      dispatcher: agentFor(extraCaCerts),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    // An untrusted certificate is most likely a TLS-inspecting proxy: the hint names DEVVM_EXTRA_CA_CERTS.
    const { hint, transient } = explainFetchFailure(error);
    const tls = !transient && hint?.includes("DEVVM_EXTRA_CA_CERTS") ? `; ${hint}` : "";
    return { ok: false, problem: "unreachable", message: `Vault at ${location.address} is unreachable (${cause?.code ?? cause?.message ?? (error as Error).message})${tls}` };
  }
  const where = `${location.mount}/${location.path} at ${location.address}`;
  if (response.status === 403) return { ok: false, problem: "denied", message: `Vault refused the token for ${where} (HTTP 403)` };
  if (response.status === 404) return { ok: false, problem: "not-found", message: `Vault has no secret ${where} (HTTP 404)` };
  if (!response.ok) return { ok: false, problem: "bad-response", message: `Vault answered HTTP ${response.status} for ${where}` };
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    // JSON.parse's message quotes the text it choked on: never shown.
    return { ok: false, problem: "bad-response", message: `Vault's answer for ${where} is not JSON` };
  }
  const data = (body as { data?: { data?: unknown } } | null)?.data?.data;
  if (typeof data !== "object" || data === null) return { ok: false, problem: "bad-response", message: `Vault's answer for ${where} has no data.data (is ${location.mount} a KV v2 mount?)` };
  const fields = new Map<string, Secret>();
  for (const [name, value] of Object.entries(data)) {
    // A JSON document stored as an object rather than a string is kept as JSON.
    if (value !== null && value !== undefined) fields.set(name, new Secret(typeof value === "string" ? value : `${JSON.stringify(value, null, 2)}\n`));
  }
  return { ok: true, fields };
}

/** VAULT_TOKEN, else the admin's ~/.vault-token (as the vault CLI would find it). */
export async function vaultToken(ctx: BuildContext): Promise<Secret | undefined> {
  if (ctx.settings.vaultToken) return ctx.settings.vaultToken;
  const file = hostPath(ctx, path.join(ctx.settings.adminHome, ".vault-token"));
  const text = await fs.readFile(file, "utf8").catch(() => undefined);
  return text?.trim() ? new Secret(text.trim()) : undefined;
}
