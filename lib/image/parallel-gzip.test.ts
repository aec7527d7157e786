import { execFileSync } from "node:child_process";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { gunzipSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { GZIP_BLOCK_BYTES, parallelGzip, type ParallelGzipOptions } from "./parallel-gzip.ts";

const BLOCK = 64 * 1024;

/** Bytes that compress somewhat, as a tar stream does: words from a small list, in an order that does not repeat. */
function sample(size: number, seed = 1): Buffer {
  const words = ["usr", "lib", "share", "doc", "\n", "/", "devvm", "\0\0\0\0", "copyright", " "];
  const out = Buffer.alloc(size);
  let state = seed;
  for (let at = 0; at < size;) {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    at += out.write(words[state % words.length]!, at, "latin1");
  }
  return out;
}

/** `input` through parallelGzip, fed `chunkBytes` at a time. */
async function compress(input: Buffer, options: ParallelGzipOptions = {}, chunkBytes = 10_000): Promise<Buffer> {
  const chunks = Array.from({ length: Math.ceil(input.length / chunkBytes) }, (_, i) =>
    input.subarray(i * chunkBytes, (i + 1) * chunkBytes),
  );
  const members: Buffer[] = [];
  await pipeline(Readable.from(chunks), parallelGzip(options), async (source: AsyncIterable<Buffer>) => {
    for await (const member of source) members.push(member);
  });
  return Buffer.concat(members);
}

const systemGunzip = (gz: Buffer) => execFileSync("gzip", ["-dc"], { input: gz, maxBuffer: 256 * 1024 * 1024 });

describe("parallelGzip", () => {
  it.each([
    ["no input", 0, 1],
    ["less than one block", 1000, 1],
    ["exactly one block", BLOCK, 1],
    ["several blocks and a tail", 5 * BLOCK + 123, 6],
  ])("%s: one gzip member per block, which Node and the system's gzip read back", async (_, size, members) => {
    const input = sample(size);
    const gz = await compress(input, { blockBytes: BLOCK, inFlight: 3 });
    // Each member is what gzip -6 of that block alone is (an empty input still gets one member).
    const expected = Array.from({ length: members }, (_, i) =>
      gzipSync(input.subarray(i * BLOCK, (i + 1) * BLOCK), { level: 6 }),
    );
    expect(gz.equals(Buffer.concat(expected))).toBe(true);
    expect(gunzipSync(gz).equals(input)).toBe(true);
    expect(systemGunzip(gz).equals(input)).toBe(true);
  });

  it("reads back with the real block size (16 MiB), several blocks and a tail", async () => {
    const input = sample(2 * GZIP_BLOCK_BYTES + 4321, 7);
    const gz = await compress(input, {}, 65_536);
    expect(gunzipSync(gz).equals(input)).toBe(true);
    expect(systemGunzip(gz).equals(input)).toBe(true);
  });

  it("gives the same bytes every time, whatever the blocks in flight and the chunks it is fed", async () => {
    const input = sample(7 * BLOCK + 5, 3);
    const first = await compress(input, { blockBytes: BLOCK, inFlight: 1 }, 10_000);
    const second = await compress(input, { blockBytes: BLOCK, inFlight: 1 }, 10_000);
    const wide = await compress(input, { blockBytes: BLOCK, inFlight: 16 }, 777);
    const whole = await compress(input, { blockBytes: BLOCK, inFlight: 4 }, input.length);
    expect(second.equals(first)).toBe(true);
    expect(wide.equals(first)).toBe(true);
    expect(whole.equals(first)).toBe(true);
    expect(first.subarray(3, 10)).toEqual(Buffer.from([0, 0, 0, 0, 0, 0, 3])); // no name, no time, Unix
  });

  it("reads no further ahead than the blocks in flight", async () => {
    let produced = 0;
    let producedAtFirstMember: number | undefined;
    async function* source() {
      for (let i = 0; i < 40; i++) {
        produced += 1000;
        yield sample(1000, i);
      }
    }
    await pipeline(source, parallelGzip({ blockBytes: 4000, inFlight: 2 }), async (members: AsyncIterable<Buffer>) => {
      for await (const _ of members) producedAtFirstMember ??= produced;
    });
    expect(producedAtFirstMember).toBe(2 * 4000);
  });

  it("rejects the pipeline when the source throws", async () => {
    async function* source() {
      yield sample(3 * BLOCK);
      throw new Error("the disk went away");
    }
    const sink = async (members: AsyncIterable<Buffer>) => {
      for await (const _ of members);
    };
    await expect(pipeline(source, parallelGzip({ blockBytes: BLOCK }), sink)).rejects.toThrow("the disk went away");
  });

  it("rejects the pipeline when zlib refuses a block, with the blocks behind it in flight", async () => {
    const sink = async (members: AsyncIterable<Buffer>) => {
      for await (const _ of members);
    };
    const source = Readable.from([sample(6 * BLOCK)]);
    await expect(pipeline(source, parallelGzip({ blockBytes: BLOCK, inFlight: 4, level: 42 }), sink)).rejects.toThrow(
      /level/,
    );
  });

  it("stops reading the source when the destination fails", async () => {
    let stopped = false;
    let produced = 0;
    async function* source() {
      try {
        for (let i = 0; i < 1000; i++) {
          produced++;
          yield sample(BLOCK);
        }
      } finally {
        stopped = true;
      }
    }
    const failingSink = async (members: AsyncIterable<Buffer>) => {
      for await (const _ of members) throw new Error("disk full");
    };
    await expect(pipeline(source, parallelGzip({ blockBytes: BLOCK, inFlight: 2 }), failingSink)).rejects.toThrow(
      "disk full",
    );
    expect(stopped).toBe(true);
    expect(produced).toBeLessThan(10);
  });
});
