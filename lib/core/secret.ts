// A secret value (a Vault token, an OAuth token) as a type of its own: it
// prints as [secret] wherever it ends up by accident (a log line, a template
// string, JSON for the report or the manifest, util.inspect in a stack).
// Only reveal() gives the value, and only where it goes into a file or an
// HTTP header, never onto a command line.
import { inspect } from "node:util";

export const REDACTED = "[secret]";

// The texts to scrub, each in every form a secret value can take in printed
// text (see formsOf), so text from elsewhere (an error body, a child's output,
// a library's error that quotes a header) can be scrubbed before it is shown.
// Process-wide on purpose, not a build's: a Secret is made wherever a value
// is read (settings, Vault, a token file), before or without any build, and
// every line the process prints passes redactSecrets, a stack trace at exit
// included; a value once seen stays scrubbed for as long as the process runs.
const known = new Set<string>();
const seen = new Set<string>();
// Shorter values would redact ordinary words; no real token is this short.
const MIN_SCRUBBED_LENGTH = 6;
// A string inside a JSON secret (auth.json's access_token) is a secret of its
// own when it looks like a token: this long, without spaces.
const MIN_TOKEN_LEAF_LENGTH = 20;

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
    remember(value);
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

/**
 * Why a token cannot go into an HTTP header as it is ("a line break", "a
 * space", ...), or undefined when it can: visible ASCII only. Names the kind
 * of character, never the value.
 */
export function tokenProblem(value: string): string | undefined {
  if (value === "") return "it is empty";
  if (/[\r\n]/.test(value)) return "it contains a line break";
  if (/[ \t]/.test(value)) return "it contains a space or a tab";
  if (/[\x00-\x1f\x7f]/.test(value)) return "it contains a control character";
  if (/[^\x21-\x7e]/.test(value)) return "it contains a non-ASCII character";
  return undefined;
}

/**
 * Text with every secret value this process has seen replaced by [secret]:
 * the value as it is, JSON-escaped (once or twice, \uXXXX for non-ASCII),
 * as util.inspect quotes it, URL-encoded, in base64 (also inside a longer
 * base64 text, as in a Basic Authorization header), each line of a
 * multi-line value, each token inside a JSON value; and any of these broken
 * across lines (a line break, or an escaped \n, plus the next line's
 * indentation, anywhere inside).
 */
export function redactSecrets(text: string): string {
  if (known.size === 0) return text;
  const { squeezed, origin } = squeeze(text);
  const spans: Array<[number, number]> = [];
  for (const form of known) {
    for (let at = squeezed.indexOf(form); at !== -1; at = squeezed.indexOf(form, at + 1)) {
      spans.push([origin[at]!, origin[at + form.length - 1]! + 1]);
    }
  }
  if (spans.length === 0) return text;
  spans.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  let out = "";
  let done = 0;
  for (const [start, end] of spans) {
    if (end <= done) continue;
    out += text.slice(done, Math.max(start, done)) + (start >= done ? REDACTED : "");
    done = end;
  }
  return out + text.slice(done);
}

// A line break as it appears in printed text (a real one, or escaped as in
// JSON) with the indentation that follows it.
const BREAK = /(?:\r?\n|\\r\\n|\\n)[ \t]*/g;

/** The text without line breaks, and where each of its characters was in the text. */
function squeeze(text: string): { squeezed: string; origin: Int32Array } {
  const parts: string[] = [];
  const origin = new Int32Array(text.length);
  let length = 0;
  let from = 0;
  const keep = (end: number) => {
    parts.push(text.slice(from, end));
    for (let i = from; i < end; i++) origin[length++] = i;
  };
  for (const match of text.matchAll(BREAK)) {
    keep(match.index);
    from = match.index + match[0].length;
  }
  keep(text.length);
  return { squeezed: parts.join(""), origin };
}

function remember(value: string): void {
  if (seen.has(value)) return;
  seen.add(value);
  for (const form of formsOf(value)) {
    const squeezed = squeeze(form).squeezed;
    if (squeezed.length >= MIN_SCRUBBED_LENGTH) known.add(squeezed);
  }
  // A value of several lines may be printed a line at a time.
  const lines = value.split(/\r?\n/).map((l) => l.trim());
  if (lines.length > 1) for (const line of lines) if (line.length >= MIN_SCRUBBED_LENGTH) remember(line);
  for (const leaf of tokenLeaves(value)) remember(leaf);
}

/** The forms a value takes in printed text. */
function formsOf(value: string): Set<string> {
  const json = JSON.stringify(value).slice(1, -1);
  const asciiJson = json.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  const url = encodeURIComponent(value);
  const forms = new Set([
    value,
    json,
    JSON.stringify(json).slice(1, -1),
    asciiJson,
    asciiJson.replace(/\\u([0-9a-f]{4})/g, (_, hex: string) => `\\u${hex.toUpperCase()}`),
    inspect(value).slice(1, -1),
    url,
    url.replace(/%[0-9A-F]{2}/g, (c) => c.toLowerCase()),
    new URLSearchParams({ v: value }).toString().slice(2),
    encodeURI(value),
  ]);
  for (const core of base64Cores(Buffer.from(value, "utf8"))) forms.add(core);
  return forms;
}

/**
 * The value's base64, standard and URL-safe, in each of the three positions
 * it can have inside a longer encoded text (`user:TOKEN` in a Basic header):
 * only the characters that depend on the value's bytes alone.
 */
function base64Cores(bytes: Buffer): string[] {
  const cores: string[] = [];
  for (const offset of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString("base64");
    // Characters mixing bytes of the text before (offset) or after the value.
    const first = [0, 2, 3][offset]!;
    const whole = offset + bytes.length;
    const last = Math.floor(whole / 3) * 4 + [0, 1, 2][whole % 3]!;
    const core = encoded.slice(first, last);
    if (core.length >= 8) cores.push(core, core.replace(/\+/g, "-").replace(/\//g, "_"));
  }
  // The value encoded on its own, with its padding.
  cores.push(bytes.toString("base64"));
  return cores;
}

/** Token-shaped strings inside a JSON value (auth.json's tokens), printed alone by whatever reads them. */
function tokenLeaves(value: string): string[] {
  if (!/^\s*[{[]/.test(value)) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return [];
  }
  const leaves: string[] = [];
  const walk = (node: unknown): void => {
    if (typeof node === "string" && node.length >= MIN_TOKEN_LEAF_LENGTH && !/\s/.test(node)) leaves.push(node);
    else if (node && typeof node === "object") for (const child of Object.values(node)) walk(child);
  };
  walk(parsed);
  return leaves;
}
