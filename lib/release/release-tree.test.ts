import { afterEach, describe, expect, it } from "vitest";
import { sourceDateEpoch } from "./release-tree.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";
import { writeFileSync } from "node:fs";
import path from "node:path";

describe("SOURCE_DATE_EPOCH", () => {
  afterEach(() => {
    delete process.env.SOURCE_DATE_EPOCH;
  });

  it("is the variable when set, else what a release recorded (no .git), else 0", async () => {
    using root = makeTestRoot();
    expect(await sourceDateEpoch(root.dir)).toBe(0);
    writeFileSync(path.join(root.dir, "SOURCE_DATE_EPOCH"), "1795700327\n");
    expect(await sourceDateEpoch(root.dir)).toBe(1795700327);
    process.env.SOURCE_DATE_EPOCH = "1700000000";
    expect(await sourceDateEpoch(root.dir)).toBe(1700000000);
  });

  it("refuses a variable that is not whole seconds, before anything is built", async () => {
    using root = makeTestRoot();
    process.env.SOURCE_DATE_EPOCH = "yesterday";
    await expect(sourceDateEpoch(root.dir)).rejects.toThrow(
      'SOURCE_DATE_EPOCH is "yesterday", not whole seconds since 1970',
    );
  });
});
