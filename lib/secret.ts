// A secret value (a Vault token, an OAuth token) as a type of its own: it
// prints as [secret] wherever it ends up by accident (a log line, a template
// string, JSON for the report or the manifest, util.inspect in a stack).
// Only reveal() gives the value, and only where it goes into a file or an
// HTTP header, never onto a command line.
import { inspect } from "node:util";

export const REDACTED = "[secret]";

// Values revealed so far, so text from elsewhere (an error body, a child's
// output) can be scrubbed of them before it is shown.
const known = new Set<string>();
// Shorter values would redact ordinary words; no real token is this short.
const MIN_SCRUBBED_LENGTH = 6;

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
    if (value.length >= MIN_SCRUBBED_LENGTH) known.add(value);
  }

  /** The value itself: for a file's content or a request header only. */
  reveal(): string {
    return this.#value;
  }

  get length(): number {
    return this.#value.length;
  }

  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `Secret(${REDACTED})`;
  }

  [Symbol.toPrimitive](): string {
    return REDACTED;
  }
}

/** Text with every secret value this process has seen replaced by [secret]. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const value of known) out = out.split(value).join(REDACTED);
  return out;
}
