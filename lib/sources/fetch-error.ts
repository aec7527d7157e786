// Why a request failed, in words a person can act on. undici rejects with
// only "fetch failed"; the reason (a TLS verdict, ECONNREFUSED, a timeout)
// is in its cause, sometimes one level further down or in an AggregateError.
// A certificate problem is almost always a TLS-inspecting proxy whose CA the
// builder does not trust, so its hint names DEVVM_EXTRA_CA_CERTS.
import { UserError } from "../core/errors.ts";

export const CA_HINT =
  "behind a TLS-inspecting proxy, trust its CA: set DEVVM_EXTRA_CA_CERTS to its certificate file (PEM)";

// OpenSSL's verdicts on a certificate chain, as Node reports them.
const CERTIFICATE_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "INVALID_CA",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

const TIMEOUT_CODES = new Set([
  "ETIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "TimeoutError",
  "AbortError",
]);

export interface FetchFailure {
  /** What went wrong, without the URL: "connection refused (ECONNREFUSED)". */
  reason: string;
  hint?: string;
  /** Worth retrying: a refused or reset connection, a timeout. Never a certificate or an unknown host. */
  transient: boolean;
}

/** The reason a fetch rejected, from the error undici threw. */
export function explainFetchFailure(error: unknown): FetchFailure {
  const cause = innermostCause(error);
  // A DOMException's code is a number; its name says what happened.
  const code =
    typeof cause.code === "string"
      ? cause.code
      : cause.name === "TimeoutError" || cause.name === "AbortError"
        ? cause.name
        : undefined;
  const detail = cause.message ?? String(error);
  if (code && CERTIFICATE_CODES.has(code))
    return {
      reason: `the server's TLS certificate is not trusted: ${detail} (${code})`,
      hint: certificateHint(code),
      transient: false,
    };
  if (code?.startsWith("ERR_SSL_") || code === "EPROTO") {
    return {
      reason: `the TLS handshake failed: ${detail} (${code})`,
      hint: `check that the address is https:// only where the server speaks TLS; ${CA_HINT}`,
      transient: false,
    };
  }
  if (code === "ENOTFOUND")
    return {
      reason: `the host name does not resolve (${code})`,
      hint: "check the address in the settings and this machine's DNS",
      transient: false,
    };
  if (code === "ECONNREFUSED")
    return {
      reason: `the connection was refused (${code}): nothing listens there`,
      hint: "check the address and port in the settings, and that the server is up",
      transient: true,
    };
  if (code && TIMEOUT_CODES.has(code))
    return {
      reason: `timed out: ${detail} (${code})`,
      hint: "check the network, or a proxy between this machine and the server",
      transient: true,
    };
  return { reason: code && !detail.includes(code) ? `${detail} (${code})` : detail, transient: true };
}

/** A failure that may pass: callers retry it; its hint is for when they give up. */
export class TransientFetchError extends Error {
  override name = "TransientFetchError";
  constructor(
    message: string,
    readonly hint: string | undefined,
    options: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * The error to throw for a failed request to url: a UserError (with the
 * hint) when retrying cannot help, else a TransientFetchError.
 */
export function fetchError(url: string, error: unknown): UserError | TransientFetchError {
  const { reason, hint, transient } = explainFetchFailure(error);
  const message = `GET ${url}: ${reason}`;
  return transient ? new TransientFetchError(message, hint, { cause: error }) : new UserError(message, hint);
}

function certificateHint(code: string): string {
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID")
    return `check this machine's clock (\`date\`); ${CA_HINT}`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return `check the host name in the address; ${CA_HINT}`;
  return CA_HINT;
}

interface ErrorLike {
  code?: unknown;
  name?: string;
  message?: string;
}

/** The deepest cause that says something: undici wraps the socket's error, Node wraps each address's in an AggregateError. */
function innermostCause(error: unknown): ErrorLike {
  let current = error as (ErrorLike & { cause?: unknown; errors?: unknown[] }) | undefined;
  for (let depth = 0; depth < 5 && current && typeof current === "object"; depth++) {
    const next = current.cause ?? (typeof current.code === "string" ? undefined : current.errors?.[0]);
    if (!next || typeof next !== "object") break;
    current = next as typeof current;
  }
  return current && typeof current === "object" ? current : { message: String(error) };
}
