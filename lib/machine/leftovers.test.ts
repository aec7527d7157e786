import { mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { LEFTOVERS, removeLeftovers } from "./leftovers.ts";
import { deadPid, makeTestRoot } from "../../test/support/test-context.ts";

describe("leftovers of a killed build", () => {
  it("are removed where the next build makes the same thing; a running process's own never are", async () => {
    using root = makeTestRoot();
    const dead = deadPid();
    const names = [
      `devvm-go-${dead}-abc`,
      `devvm-go-${process.pid}-def`,
      "devvm-go-1-ghi",
      "devvm-gopher",
      `other-${dead}-x`,
    ];
    for (const name of names) mkdirSync(path.join(root.dir, name, "cache"), { recursive: true });
    const lines: string[] = [];
    const removed = await removeLeftovers(
      { log: { info: (l) => lines.push(l), debug: () => {} } },
      root.dir,
      LEFTOVERS.goBuild,
    );
    expect(removed).toBe(1);
    expect(readdirSync(root.dir).sort()).toEqual(names.filter((n) => n !== `devvm-go-${dead}-abc`).sort());
    expect(lines).toEqual([`removed 1 scratch folder(s) of a t3-dispatch build a killed build left in ${root.dir}`]);
  });

  it("says nothing when there is nothing, or no folder", async () => {
    using root = makeTestRoot();
    const lines: string[] = [];
    const log = { info: (l: string) => lines.push(l), debug: () => {} };
    expect(
      await removeLeftovers({ log }, path.join(root.dir, "absent"), { pattern: /^x-(\d+)-/, what: "things" }),
    ).toBe(0);
    expect(lines).toEqual([]);
  });
});
