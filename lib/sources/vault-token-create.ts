// Mints a Vault token with POST <addr>/v1/auth/token/create-orphan, the
// builder's only write to Vault: orphan (it outlives the admin token that
// made it), periodic (renewed by its user's claude-auth-sync, it never
// expires; unused, it does), with the policies given and a display name to
// which Vault adds "token-". As in vault-kv.ts, the tokens travel in headers
// and bodies only, a redirect is refused, and a failure names the address
// and the HTTP status, never a body.
import { fetch } from "undici";
import type { BuildContext } from "../core/context.ts";
import { Secret, tokenProblem } from "../core/secret.ts";
import { agentFor } from "./download.ts";
import { BodyTooLargeError, readBody } from "./http-body.ts";

export interface TokenRequest {
  displayName: string;
  policies: string[];
  /** Vault's duration: "768h". */
  period: string;
}

export type TokenCreateResult = { ok: true; token: Secret } | { ok: false; message: string };

export async function createOrphanToken(
  ctx: Pick<BuildContext, "settings" | "session">,
  address: string,
  adminToken: Secret,
  request: TokenRequest,
  timeoutMs = 10_000,
): Promise<TokenCreateResult> {
  const where = `Vault at ${address} (auth/token/create-orphan for ${request.displayName})`;
  const invalid = tokenProblem(adminToken.reveal());
  if (invalid) return { ok: false, message: `the Vault token is not a valid header value (${invalid}); not sent` };
  try {
    const response = await fetch(`${address}/v1/auth/token/create-orphan`, {
      method: "POST",
      headers: { "X-Vault-Token": adminToken.reveal(), "Content-Type": "application/json" },
      body: JSON.stringify({
        policies: request.policies,
        display_name: request.displayName,
        period: request.period,
        renewable: true,
      }),
      dispatcher: agentFor(ctx),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "manual",
    });
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {});
      return { ok: false, message: `${where} answered HTTP ${response.status}` };
    }
    const bytes = await readBody(response, { what: `the answer of ${where}`, kind: "secret" });
    let token: unknown;
    try {
      token = (JSON.parse(bytes.toString("utf8")) as { auth?: { client_token?: unknown } }).auth?.client_token;
    } catch {
      return { ok: false, message: `the answer of ${where} is not JSON` };
    }
    if (typeof token !== "string" || tokenProblem(token))
      return { ok: false, message: `the answer of ${where} has no usable auth.client_token` };
    return { ok: true, token: new Secret(token) };
  } catch (error) {
    if (error instanceof BodyTooLargeError) return { ok: false, message: error.message };
    const cause = (error as { cause?: { code?: string } }).cause;
    return { ok: false, message: `${where} is unreachable (${cause?.code ?? (error as Error).message})` };
  }
}
