// `build.ts` (the default command): the selected stages in pipeline order,
// or with --plan what each would change; the report and manifest after.
import { selectStages } from "../../core/runner.ts";
import { stages } from "../../../stages/index.ts";
import type { Command } from "../command.ts";
import { runPipeline } from "../run-pipeline.ts";

export const buildCommand: Command = {
  run: (c) => runPipeline(c, selectStages(stages, c.cli), { writesOutput: true }),
};
