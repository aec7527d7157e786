// An input file's bytes made text: bounded in size, UTF-8 or refused at the
// line of the first bad byte (Node's own decoding would turn it into U+FFFD
// and carry on, so a mangled name would reach the machine).
import { isUtf8 } from "node:buffer";
import type { InputProblem } from "../errors.ts";

/** Far above any real input (the roster of a few hundred people is tens of KiB); bounds time and memory. */
export const MAX_INPUT_BYTES = 1024 * 1024;

export function decodeInput(bytes: Uint8Array, file: string): { text: string } | { problem: InputProblem } {
  if (bytes.length > MAX_INPUT_BYTES) {
    return { problem: { file, line: lineOfByte(bytes, MAX_INPUT_BYTES), message: `the file is ${bytes.length} bytes, more than the ${MAX_INPUT_BYTES} (1 MiB) an input may have; it passes the limit on this line` } };
  }
  // A leading byte order mark is dropped (TextDecoder's default); JSON.parse and yaml would trip on it.
  const text = new TextDecoder("utf-8").decode(bytes);
  if (!isUtf8(bytes)) {
    // Where decoding had to replace something, re-encoding differs first.
    const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
    const bad = firstDifference(bytes.subarray(bom), new TextEncoder().encode(text)) + bom;
    return { problem: { file, line: lineOfByte(bytes, bad), message: `not UTF-8: byte ${bad + 1} (0x${bytes[bad]?.toString(16).padStart(2, "0")}) is not part of a valid UTF-8 character; save the file as UTF-8` } };
  }
  return { text };
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return Math.min(i, a.length - 1);
}

function lineOfByte(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < bytes.length; i++) if (bytes[i] === 0x0a) line++;
  return line;
}
