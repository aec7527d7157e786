// What the selected stages need from pins.json beyond what the schema
// demands: the hashes that pins.json may lack until `build.ts lock` records
// them. Each stage declares its own (Stage.pins). A build checks them for its
// selected stages before any stage runs, preflight included, so pins.json
// with holes stops the build once, with every gap named, instead of stage
// after stage. Only the selected stages count: the hourly `--stage users,...`
// needs no hash. Apt versions are not here: loadInputs refuses a package
// without a pin in every mode but lock, whatever the stages.
import { LOCK_COMMAND, UserError } from "../core/errors.ts";
import type { Stage } from "../core/stage.ts";
import type { Settings } from "./settings.ts";
import type { Inputs } from "./index.ts";

export interface MissingPin {
  /** Key path in pins.json: "kubectl.sha256", "npm.t3.integrity". */
  key: string;
  stage: string;
  /** Why it is needed, when the key does not say: "packages.txt:3 lists it". */
  note?: string;
}

/** Every pin the stages need that pins.json lacks, in pipeline order. */
export function missingPins(
  stages: readonly Pick<Stage, "name" | "pins">[],
  inputs: Inputs,
  settings: Settings,
  options: { underRoot: boolean },
): MissingPin[] {
  return stages.flatMap(({ name, pins = [] }) =>
    (typeof pins === "function" ? pins({ settings, underRoot: options.underRoot }) : pins)
      .map((need) => (typeof need === "string" ? { key: need } : need))
      .filter(({ key }) => !valueAt(inputs.pins, key))
      .map((need) => ({ ...need, stage: name })),
  );
}

/** The value at a key path; a name may hold dots ("npm.lodash.merge.integrity" finds npm["lodash.merge"]). */
function valueAt(tree: unknown, key: string): unknown {
  if (typeof tree !== "object" || tree === null) return undefined;
  const name = Object.keys(tree).find((k) => key === k || key.startsWith(`${k}.`));
  if (name === undefined) return undefined;
  const value = (tree as Record<string, unknown>)[name];
  return key === name ? value : valueAt(value, key.slice(name.length + 1));
}

/** pins.json lacks what the selected stages need: every gap, one message. */
export class IncompletePinsError extends UserError {
  override name = "IncompletePinsError";
  constructor(
    readonly missing: MissingPin[],
    canSkip = true,
  ) {
    const stages = [...new Set(missing.map((m) => m.stage))];
    super(
      [
        `pins.json lacks ${missing.length} value${missing.length === 1 ? "" : "s"} the selected stages need; nothing was changed:`,
        ...missing.map((m) => `  pins.json: ${m.key} is missing (stage ${m.stage}${m.note ? `; ${m.note}` : ""})`),
      ].join("\n"),
      `run ${LOCK_COMMAND} where the sources are reachable: it records every missing hash (a release download's by trust on first use)${canSkip ? `; or leave the stages out: --skip ${stages.join(",")}` : ""}`,
    );
  }
}

/** Throws IncompletePinsError when the stages need pins that pins.json lacks. */
export function requireCompletePins(
  stages: readonly Pick<Stage, "name" | "pins">[],
  inputs: Inputs,
  settings: Settings,
  options: { underRoot: boolean; canSkip?: boolean },
): void {
  const missing = missingPins(stages, inputs, settings, options);
  if (missing.length > 0) throw new IncompletePinsError(missing, options.canSkip);
}
