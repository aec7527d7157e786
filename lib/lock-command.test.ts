import { describe, expect, it } from "vitest";
import { parseUpdates } from "./lock-command.ts";

describe("lock --update", () => {
  it("reads NAME and NAME@VERSION, scoped or not", () => {
    expect([...parseUpdates(["codex", "node@22.20.0", "claude-code@2.1.400"])]).toEqual([
      ["codex", undefined],
      ["node", "22.20.0"],
      ["claude-code", "2.1.400"],
    ]);
  });

  it("moves t3 only to an exact version, asked by name", () => {
    expect(() => parseUpdates(["t3"])).toThrow("exact version");
    expect(parseUpdates(["t3@0.0.27"]).get("t3")).toBe("0.0.27");
  });

  it("refuses names it cannot update", () => {
    expect(() => parseUpdates(["kubectl"])).toThrow('cannot update "kubectl"');
  });
});
