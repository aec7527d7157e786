// docs/stages.md lists the stages as `build.ts --list` prints them; this
// fails when a stage is added, renamed, moved or redescribed without the
// document. Fix: `npx tsx scripts/stages-doc.ts --write`.
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
});
