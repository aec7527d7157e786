// An input file's bytes made text: bounded in size, UTF-8 or refused at the
// line of the first bad byte (Node's own decoding would turn it into U+FFFD
// and carry on, so a mangled name would reach the machine).
import { isUtf8 } from "node:buffer";
import { constants, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import type { InputProblem } from "../core/errors.ts";

/** Far above any real input (the roster of a few hundred people is tens of KiB); bounds time and memory. */
export const MAX_INPUT_BYTES = 1024 * 1024;

/**
 * An input file's bytes, at most one past MAX_INPUT_BYTES (enough for
 * decodeInput to refuse it), with its size. Only a regular file (or a link
 * to one): a FIFO would wait for a writer forever and /dev/zero never ends.
 */
export async function readInputFile(file: string): Promise<{ bytes: Buffer; size: number }> {
  // O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused below.
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new Error(`it is ${fileKind(info)}, not a regular file`);
    const buffer = Buffer.alloc(Math.min(info.size, MAX_INPUT_BYTES) + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return { bytes: buffer.subarray(0, length), size: Math.max(info.size, length) };
  } finally {
    await handle.close();
  }
}

function fileKind(info: Stats): string {
  if (info.isDirectory()) return "a folder";
  if (info.isFIFO()) return "a FIFO";
  if (info.isCharacterDevice() || info.isBlockDevice()) return "a device";
  if (info.isSocket()) return "a socket";
  return "not a file";
}

/** `size`: the whole file's, when only its start was read. */
export function decodeInput(
  bytes: Uint8Array,
  file: string,
  size = bytes.length,
): { text: string } | { problem: InputProblem } {
  if (bytes.length > MAX_INPUT_BYTES) {
    return {
      problem: {
        file,
        line: lineOfByte(bytes, MAX_INPUT_BYTES),
        message: `the file is ${size} bytes, more than the ${MAX_INPUT_BYTES} (1 MiB) an input may have; it passes the limit on this line`,
      },
    };
  }
  // A leading byte order mark is dropped (TextDecoder's default); JSON.parse and yaml would trip on it.
  const text = new TextDecoder("utf-8").decode(bytes);
  if (!isUtf8(bytes)) {
    // Where decoding had to replace something, re-encoding differs first.
    const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
    const bad = firstDifference(bytes.subarray(bom), new TextEncoder().encode(text)) + bom;
    return {
      problem: {
        file,
        line: lineOfByte(bytes, bad),
        message: `not UTF-8: byte ${bad + 1} (0x${bytes[bad]?.toString(16).padStart(2, "0")}) is not part of a valid UTF-8 character; save the file as UTF-8`,
      },
    };
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
