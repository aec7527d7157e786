// A strict JSON reader (RFC 8259) that keeps where every key and value is:
// pins.json is JSON only. Comments, trailing commas, single quotes, bare
// keys and duplicate keys are refused at their line and column, which
// JSON.parse does not give (Node 20 names no position for most mistakes).
import { columnAt, MAX_DEPTH, PROTO_KEY, PROTO_KEY_MESSAGE, type SourceNode, type SourceTree } from "./source-tree.ts";

class JsonSyntax extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

export function readJsonTree(text: string): SourceTree {
  try {
    return new JsonReader(text).document();
  } catch (error) {
    if (!(error instanceof JsonSyntax)) throw error;
    return {
      problems: [{ offset: error.offset, message: `column ${columnAt(text, error.offset)}: ${error.message}` }],
    };
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

class JsonReader {
  private at = 0;
  constructor(private readonly text: string) {}

  document(): SourceTree {
    this.space();
    if (this.at >= this.text.length) throw new JsonSyntax(0, "the file is empty: expected a JSON object");
    const { value, node } = this.value([]);
    this.space();
    if (this.at < this.text.length) throw this.unexpected("the end of the file after the top-level value");
    return { value, root: node, problems: [] };
  }

  private value(path: string[]): { value: unknown; node: SourceNode } {
    const offset = this.at;
    const char = this.text[this.at];
    if (char === "{" || char === "[") {
      if (path.length >= MAX_DEPTH) throw new JsonSyntax(offset, `nested deeper than ${MAX_DEPTH} levels`);
      return char === "{" ? this.object(path) : this.array(path);
    }
    if (char === '"') return { value: this.string(), node: { offset } };
    for (const [word, value] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return { value, node: { offset } };
      }
    }
    NUMBER.lastIndex = this.at;
    const number = NUMBER.exec(this.text);
    if (number) {
      this.at += number[0].length;
      return { value: Number(number[0]), node: { offset } };
    }
    throw this.unexpected("a value (a string, number, object, list, true, false or null)");
  }

  private object(path: string[]): { value: unknown; node: SourceNode } {
    const offset = this.at++;
    // No prototype: a key is only ever an own property, whatever its name.
    const value: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    const entries = new Map<string, { keyOffset: number; node: SourceNode }>();
    this.space();
    if (this.text[this.at] === "}") {
      this.at++;
      return { value, node: { offset, entries } };
    }
    for (let comma = -1; ;) {
      this.space();
      const keyOffset = this.at;
      if (this.text[this.at] === "}" && comma !== -1)
        throw new JsonSyntax(comma, "a trailing comma before }: JSON allows none");
      if (this.text[this.at] !== '"') throw this.unexpected("a key in double quotes");
      const key = this.string();
      const where = [...path, key].join(".");
      if (key === PROTO_KEY) throw new JsonSyntax(keyOffset, `${where}: ${PROTO_KEY_MESSAGE}`);
      if (entries.has(key)) throw new JsonSyntax(keyOffset, `${where}: appears twice in one object; keep one`);
      this.space();
      if (this.text[this.at] !== ":") throw this.unexpected(`: after the key ${JSON.stringify(key)}`);
      this.at++;
      this.space();
      const child = this.value([...path, key]);
      value[key] = child.value;
      entries.set(key, { keyOffset, node: child.node });
      this.space();
      if (this.text[this.at] === ",") {
        comma = this.at++;
        continue;
      }
      if (this.text[this.at] === "}") {
        this.at++;
        return { value, node: { offset, entries } };
      }
      throw this.unexpected(", or } after a value");
    }
  }

  private array(path: string[]): { value: unknown; node: SourceNode } {
    const offset = this.at++;
    const value: unknown[] = [];
    const items: SourceNode[] = [];
    this.space();
    if (this.text[this.at] === "]") {
      this.at++;
      return { value, node: { offset, items } };
    }
    for (let comma = -1; ;) {
      this.space();
      if (this.text[this.at] === "]" && comma !== -1)
        throw new JsonSyntax(comma, "a trailing comma before ]: JSON allows none");
      const child = this.value([...path, String(items.length)]);
      value.push(child.value);
      items.push(child.node);
      this.space();
      if (this.text[this.at] === ",") {
        comma = this.at++;
        continue;
      }
      if (this.text[this.at] === "]") {
        this.at++;
        return { value, node: { offset, items } };
      }
      throw this.unexpected(", or ] after a value");
    }
  }

  private string(): string {
    const start = this.at++;
    let out = "";
    for (;;) {
      const char = this.text[this.at];
      if (char === undefined) throw new JsonSyntax(start, "a string that is never closed");
      if (char === '"') {
        this.at++;
        return out;
      }
      if (char < " ")
        throw new JsonSyntax(
          this.at,
          "a control character (such as a line break or tab) inside a string: write it as an escape (\\n, \\t)",
        );
      if (char !== "\\") {
        out += char;
        this.at++;
        continue;
      }
      const escape = this.text[this.at + 1];
      if (escape === "u" && /^[0-9a-fA-F]{4}$/.test(this.text.slice(this.at + 2, this.at + 6))) {
        out += String.fromCharCode(parseInt(this.text.slice(this.at + 2, this.at + 6), 16));
        this.at += 6;
      } else if (escape !== undefined && Object.hasOwn(ESCAPES, escape)) {
        out += ESCAPES[escape];
        this.at += 2;
      } else {
        throw new JsonSyntax(this.at, `an invalid escape ${JSON.stringify(`\\${escape ?? ""}`)} in a string`);
      }
    }
  }

  /** JSON's whitespace only: space, tab, line feed, carriage return. */
  private space(): void {
    while (this.at < this.text.length && " \t\n\r".includes(this.text[this.at]!)) this.at++;
  }

  private unexpected(expected: string): JsonSyntax {
    const char = this.text[this.at];
    if (char === undefined)
      return new JsonSyntax(this.at, `the file ends where JSON expects ${expected}: something is not closed`);
    if (char === "/" || char === "#")
      return new JsonSyntax(
        this.at,
        `a comment (${char === "#" ? "#" : this.text.slice(this.at, this.at + 2)}): JSON has no comments (in pins.json, a note goes in "$comment")`,
      );
    if (char === "'") return new JsonSyntax(this.at, "a single-quoted string: JSON strings use double quotes");
    if (expected.startsWith("a key") && /[A-Za-z_$]/.test(char))
      return new JsonSyntax(this.at, "a key without quotes: JSON keys are double-quoted strings");
    return new JsonSyntax(this.at, `expected ${expected}, found ${JSON.stringify(char)}`);
  }
}
