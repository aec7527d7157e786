import { describe, expect, it } from "vitest";
import { compareVersions, downgradeRefusal, newestOf } from "./t3-gate.ts";

describe("t3 versions", () => {
  it("orders numerically, a release above its nightlies", () => {
    const sorted = ["0.0.28", "0.0.9", "0.0.27-nightly.10", "0.0.27", "0.0.27-nightly.9", "0.1.0", "v0.0.26"].sort(
      compareVersions,
    );
    expect(sorted).toEqual(["0.0.9", "v0.0.26", "0.0.27-nightly.9", "0.0.27-nightly.10", "0.0.27", "0.0.28", "0.1.0"]);
    expect(compareVersions("0.0.26", "0.0.26")).toBe(0);
  });

  it("finds the newest, ignoring what is unknown", () => {
    expect(newestOf([null, "0.0.26", undefined, "0.0.30-nightly.1", "0.0.28"])).toBe("0.0.30-nightly.1");
    expect(newestOf([null, ""])).toBeNull();
  });

  it("refuses only a move below the newest that ran", () => {
    expect(downgradeRefusal("0.0.28", null)).toBeNull();
    expect(downgradeRefusal("0.0.28", "0.0.28")).toBeNull();
    expect(downgradeRefusal("0.0.29", "0.0.28")).toBeNull();
    expect(downgradeRefusal("0.0.27", "0.0.28")?.hint).toContain("lock --update t3@0.0.28");
  });
});
