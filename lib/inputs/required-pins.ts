// What each stage needs from pins.json beyond what the schema demands: the
// hashes that pins.json may lack until `build.ts lock` records them. A build
// checks them for its selected stages before any stage runs, preflight
// included, so a lock with holes stops the build once, with every gap named,
// instead of stage after stage. Only the selected stages count: the hourly
// `--stage users,...` needs no hash. A stage that skips itself under --root
// (the npm CLIs) needs nothing there. Apt versions are not here: loadInputs
// refuses a package without a pin in every mode but lock, whatever the stages.
import { LOCK_COMMAND, UserError } from "../core/errors.ts";
import type { Settings } from "./settings.ts";
import type { Inputs } from "./index.ts";

export interface MissingPin {
  /** Key path in pins.json: "kubectl.sha256", "npm.t3.integrity". */
  key: string;
  stage: string;
  /** Why it is needed, when the key does not say: "packages.txt:3 lists it". */
  note?: string;
}

interface Need {
  key: string;
  present: boolean;
  note?: string;
}

const SKIPPED_UNDER_ROOT = new Set(["claude-code", "t3", "codex"]);

const NEEDS: Record<string, (inputs: Inputs, settings: Settings) => Need[]> = {
  node: ({ pins }, settings) => [
    settings.nodeSource === "official"
      ? { key: "node.sha256", present: Boolean(pins.node.sha256), note: "DEVVM_NODE_SOURCE=official" }
      : { key: "node.integrity", present: Boolean(pins.node.integrity) },
    { key: "node.npm.integrity", present: Boolean(pins.node.npm.integrity) },
  ],
  "claude-code": ({ pins }) => [
    {
      key: "npm.@anthropic-ai/claude-code.integrity",
      present: Boolean(pins.npm["@anthropic-ai/claude-code"].integrity),
    },
  ],
  t3: ({ pins }) => [{ key: "npm.t3.integrity", present: Boolean(pins.npm.t3.integrity) }],
  codex: ({ pins }) => [{ key: "npm.@openai/codex.integrity", present: Boolean(pins.npm["@openai/codex"].integrity) }],
  kubelogin: ({ pins }) => [
    { key: "kubelogin.sha256", present: Boolean(pins.kubelogin.sha256) },
    { key: "kubelogin.binarySha256", present: Boolean(pins.kubelogin.binarySha256) },
  ],
  kubectl: ({ pins }) => [{ key: "kubectl.sha256", present: Boolean(pins.kubectl.sha256) }],
};

/** Every pin the named stages need that pins.json lacks, in pipeline order. */
export function missingPins(
  stageNames: readonly string[],
  inputs: Inputs,
  settings: Settings,
  options: { underRoot: boolean },
): MissingPin[] {
  return stageNames
    .filter((stage) => !(options.underRoot && SKIPPED_UNDER_ROOT.has(stage)))
    .flatMap((stage) =>
      (NEEDS[stage]?.(inputs, settings) ?? [])
        .filter((need) => !need.present)
        .map((need) => ({ key: need.key, stage, ...(need.note ? { note: need.note } : {}) })),
    );
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

/** Throws IncompletePinsError when the named stages need pins that pins.json lacks. */
export function requireCompletePins(
  stageNames: readonly string[],
  inputs: Inputs,
  settings: Settings,
  options: { underRoot: boolean; canSkip?: boolean },
): void {
  const missing = missingPins(stageNames, inputs, settings, options);
  if (missing.length > 0) throw new IncompletePinsError(missing, options.canSkip);
}
