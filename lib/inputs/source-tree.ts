// What a YAML or JSON reader hands to parseLocated: the value, and where
// each key and value sits in the text, so every later problem gets a line.

/** A value's place in the text; maps and lists also hold their children's. */
export interface SourceNode {
  offset: number;
  entries?: Map<string, { keyOffset: number; node: SourceNode }>;
  items?: SourceNode[];
}

export interface SourceTree {
  /** The document as plain data, present only when problems is empty. */
  value?: unknown;
  root?: SourceNode;
  /** Syntax problems (and refused constructs), each at an offset in the text. */
  problems: Array<{ offset: number; message: string }>;
}

// A roster nests four levels deep, pins.json three. The limit keeps the
// readers far from the stack (yaml's composer recurses, and a stack it
// exhausted once left V8 unable to compile a regular expression later).
export const MAX_DEPTH = 32;

/** Refused everywhere: a JavaScript object treats the key __proto__ as its prototype, so it would vanish. */
export const PROTO_KEY = "__proto__";
export const PROTO_KEY_MESSAGE = `"${PROTO_KEY}" is refused as a key: JavaScript objects treat it specially (it would silently vanish)`;

/** 1-based line of a character offset. */
export function lineIndex(text: string): (offset: number) => number {
  const starts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return (offset) => {
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (starts[mid]! <= offset) low = mid;
      else high = mid - 1;
    }
    return low + 1;
  };
}

/** 1-based column of a character offset. */
export function columnAt(text: string, offset: number): number {
  return offset - (text.lastIndexOf("\n", offset - 1) + 1) + 1;
}
