import type { Stage } from "../core/stage.ts";

/** What `build.ts --list` prints: each stage in pipeline order, its first-boot mark, its description. */
export function stageList(stages: readonly Pick<Stage, "name" | "description" | "firstBoot">[]): string {
  const width = Math.max(...stages.map((s) => s.name.length));
  return stages
    .map((stage) => `${stage.name.padEnd(width)}  ${stage.firstBoot ? "[first boot] " : ""}${stage.description}\n`)
    .join("");
}
