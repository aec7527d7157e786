// Random byte mutations of the committed inputs end in the inputs or an
// InputError with lines (exit 2), never in anything else (a crash, exit 70).
import { describe, expect, it } from "vitest";
import { InputError } from "../core/errors.ts";
import { loadInputs } from "./index.ts";
import { COMMITTED, inputFolders, type InputFile } from "../../test/support/input-folders.ts";

const { inputsWith } = inputFolders();

/** mulberry32: a small seeded generator, so a failure is reproducible by its seed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Bytes that mean something to YAML, JSON or a line-based parser, and a few that are no UTF-8.
const INTERESTING = Buffer.from(":-[]{},&*!|>#\"'\n\t\r \\%@`?0~_", "latin1");
const BAD_BYTES = [0x00, 0xff, 0xc3, 0xe2, 0x80];

function mutate(bytes: Buffer, next: () => number): Buffer {
  const at = Math.floor(next() * (bytes.length + 1));
  const pick = (from: ArrayLike<number>) => from[Math.floor(next() * from.length)]!;
  const span = 1 + Math.floor(next() * 40);
  switch (Math.floor(next() * 6)) {
    case 0:
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(INTERESTING)]), bytes.subarray(at)]);
    case 1:
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + span)]);
    case 2:
      return Buffer.concat([bytes.subarray(0, at + span), bytes.subarray(at)]);
    case 3: {
      const copy = Buffer.from(bytes);
      if (at < copy.length) copy[at] = pick(INTERESTING);
      return copy;
    }
    case 4:
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(BAD_BYTES)]), bytes.subarray(at)]);
    default:
      return bytes.subarray(0, at);
  }
}

describe("fuzzed inputs", () => {
  it.each(Object.keys(COMMITTED) as InputFile[])(
    "random mutations of the committed %s end in the inputs or an InputError with lines, never a crash",
    async (file) => {
      const seed = 0x5eed + file.length;
      const next = random(seed);
      let refused = 0;
      for (let i = 0; i < 300; i++) {
        let bytes: Buffer = COMMITTED[file];
        for (let m = 1 + Math.floor(next() * 3); m > 0; m--) bytes = mutate(bytes, next);
        const outcome = await loadInputs(inputsWith({ [file]: bytes })).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (outcome === undefined) continue;
        refused++;
        const where = `seed ${seed}, iteration ${i}: ${JSON.stringify(bytes.toString("latin1"))}`;
        expect(outcome, `${where}: ${(outcome as Error).stack}`).toBeInstanceOf(InputError);
        for (const p of (outcome as InputError).problems)
          expect(p.line, `${where}: ${p.message}`).toBeGreaterThanOrEqual(1);
      }
      // Most mutations break something; a fuzzer that never trips the parser proves nothing.
      expect(refused).toBeGreaterThan(100);
    },
  );
});
