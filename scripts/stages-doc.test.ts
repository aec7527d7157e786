// docs/stages.md lists the stages as `build.ts --list` prints them, and
// tells each under a heading of its name; this fails when a stage is added,
// renamed, moved or redescribed without the document. The list is fixed by
// `npx tsx scripts/stages-doc.ts --write`; a new stage's section by hand.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { stages } from "../stages/index.ts";
import { documentedBlock, generatedBlock, stageList, STAGES_DOC } from "./stages-doc.ts";

describe("docs/stages.md", () => {
  it("holds the stage list generated from stages/index.ts", () => {
    const doc = readFileSync(STAGES_DOC, "utf8");
    expect(documentedBlock(doc), "run `npx tsx scripts/stages-doc.ts --write`").toBe(generatedBlock());
  });

  it("lists every stage once, in pipeline order, marking those left to an image's first boot", () => {
    const lines = stageList().trimEnd().split("\n");
    expect(lines.map((l) => l.split(" ")[0])).toEqual(stages.map((s) => s.name));
    for (const [i, stage] of stages.entries())
      expect(lines[i]!.includes("[first boot]")).toBe(Boolean(stage.firstBoot));
  });

  it("tells each stage under a heading of its own name", () => {
    const headings = [...readFileSync(STAGES_DOC, "utf8").matchAll(/^### (.+)$/gm)].map((m) => m[1]!);
    const named = new Set(headings.flatMap((h) => [...h.matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1]!)));
    expect(stages.map((s) => s.name).filter((name) => !named.has(name))).toEqual([]);
  });
});
