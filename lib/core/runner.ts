// Runs the selected stages in pipeline order. The runner, not the stages,
// prints one line per stage (name, outcome, duration) and the summary.
// Each stage logs through its own logger: its lines go under its header
// while it is the stage running, and are labelled `[name]` when they come
// from its background work (lib/core/background.ts: what it prepares while
// earlier stages run) while another stage runs.
import { performance } from "node:perf_hooks";
import { Background } from "./background.ts";
import { describeChange, diffOf, type Change } from "./change.ts";
import type { BuildContext, Logger } from "./context.ts";
import { UserError } from "./errors.ts";
import type { Managed } from "../machine/files.ts";
import { isSkip, type FailureDetail, type Stage, type StageResult } from "./stage.ts";

export interface Selection {
  stage?: string[];
  from?: string;
  skip?: string[];
}

/** The stages to run, in pipeline order; `always` stages are always in. */
export function selectStages(all: readonly Stage[], selection: Selection): Stage[] {
  const names = all.map((s) => s.name);
  const known = (name: string) => {
    if (!names.includes(name))
      throw new UserError(`unknown stage "${name}"`, `valid stages, in order: ${names.join(", ")}`);
    return name;
  };
  if (selection.stage && selection.from)
    throw new UserError("--stage and --from cannot be combined", "use --stage a,b or --from a, with --skip if needed");
  const only = selection.stage?.map(known);
  const fromIndex = selection.from ? names.indexOf(known(selection.from)) : 0;
  const skip = new Set(selection.skip?.map(known));
  for (const name of skip) {
    if (all.find((s) => s.name === name)?.always)
      throw new UserError(
        `stage ${name} cannot be skipped`,
        "it guards every build (root, a supported release, one build at a time)",
      );
  }
  return all.filter((stage, index) => {
    if (stage.always) return true;
    if (skip.has(stage.name)) return false;
    if (only) return only.includes(stage.name);
    return index >= fromIndex;
  });
}

export interface Printer {
  line(text: string): void;
}

export interface RunResult {
  results: StageResult[];
  /** Paths each stage that ran (even if it failed) manages. */
  managed: Map<string, Managed[]>;
  /** Installed versions, per stage that ran. */
  inventory: Map<string, Record<string, string>>;
  failed: boolean;
  /** The error that failed the build, for build.ts to choose the exit code. */
  failure?: unknown;
  pending: boolean;
}

export async function runStages(
  ctx: BuildContext,
  stages: Stage[],
  printer: Printer,
  options: { debug: boolean },
): Promise<RunResult> {
  const width = Math.max(...stages.map((s) => s.name.length));
  const results: StageResult[] = [];
  const managed = new Map<string, Managed[]>();
  const inventory = new Map<string, Record<string, string>>();
  let failed = false;
  let failure: unknown;
  const started = performance.now();
  const logs = new StageLogs(ctx.log, printer);
  // --plan changes nothing, and prepares nothing either.
  const background = ctx.planOnly ? undefined : new Background();
  const warnings = new Map(stages.map((s) => [s.name, [] as string[]]));
  const ctxOf = (stage: Stage): BuildContext => ({
    ...ctx,
    log: logs.loggerFor(stage.name),
    warnings: warnings.get(stage.name)!,
    ...(background ? { background } : {}),
  });
  if (background) startPreparations(ctx.forImage ? stages.filter((s) => !s.firstBoot) : stages, ctxOf, background);

  for (const stage of stages) {
    if (failed) {
      results.push({ name: stage.name, outcome: "not-run" });
      continue;
    }
    const t0 = performance.now();
    const elapsed = () => Math.round(performance.now() - t0);
    logs.running = stage.name;
    const stageCtx = ctxOf(stage);
    let changes: Change[] = [];
    let result: StageResult;
    try {
      const check =
        ctx.forImage && stage.firstBoot
          ? { skip: `left to the first boot of the image: ${stage.firstBoot}` }
          : await stage.check(stageCtx);
      if (isSkip(check)) {
        result = { name: stage.name, outcome: "skipped", durationMs: elapsed(), reason: check.skip };
      } else {
        managed.set(stage.name, check.managed);
        changes = check.changes;
        if (changes.length === 0) result = { name: stage.name, outcome: "unchanged", durationMs: elapsed() };
        else if (ctx.planOnly) result = { name: stage.name, outcome: "pending", durationMs: elapsed(), changes };
        else {
          const applied = await stage.apply(stageCtx, check);
          result =
            applied.length === 0
              ? { name: stage.name, outcome: "unchanged", durationMs: elapsed() }
              : { name: stage.name, outcome: "changed", durationMs: elapsed(), changes: applied };
        }
      }
      if (stage.inventory && !ctx.planOnly && result.outcome !== "skipped")
        inventory.set(stage.name, await stage.inventory(stageCtx));
    } catch (error) {
      failed = true;
      failure = error;
      result = {
        name: stage.name,
        outcome: "failed",
        durationMs: elapsed(),
        error: failureOf(error, options.debug),
        changes,
      };
    }
    logs.running = undefined;
    const warned = warnings.get(stage.name)!;
    if (warned.length > 0) result.warnings = [...warned];
    results.push(result);
    printResult(printer, result, width, ctx.planOnly, options.debug);
  }
  // Background work left over (of stages that did not run: a failure came first) says nothing more, but under --debug.
  logs.finished = true;
  await background?.settle(ctx.log);

  const pending = results.some((r) => r.outcome === "pending");
  printer.line(summarize(results, Math.round(performance.now() - started)));
  return { results, managed, inventory, failed, failure, pending };
}

/**
 * Where a stage's lines go. The running stage's lines go under a header
 * naming it (printed before its first line; its result line follows).
 * Another stage's lines (what it prepares while an earlier stage runs) say
 * whose they are: `[node] downloading ...`. The logger asks which stage runs
 * when it prints, so work a preparation started prints plainly once its
 * own stage runs and waits for it.
 */
class StageLogs {
  running: string | undefined;
  finished = false;
  private readonly headed = new Set<string>();

  constructor(
    private readonly log: Logger,
    private readonly printer: Printer,
  ) {}

  loggerFor(name: string): Logger {
    return {
      info: (message) => {
        if (name !== this.running) {
          if (this.finished) this.log.debug(`[${name}] ${message}`);
          else this.log.info(`[${name}] ${message}`);
          return;
        }
        if (!this.headed.has(name)) this.printer.line(`  ${name}:`);
        this.headed.add(name);
        this.log.info(message);
      },
      debug: (message) => this.log.debug(name === this.running ? message : `[${name}] ${message}`),
    };
  }
}

/**
 * Preparations start their jobs in the background, then the background is
 * sealed: a job nobody started never will. A failed one is retried by the
 * stage's apply, which reports it.
 */
function startPreparations(stages: Stage[], ctxOf: (stage: Stage) => BuildContext, background: Background): void {
  for (const stage of stages) {
    const ctx = ctxOf(stage);
    try {
      stage.prepare?.(ctx);
    } catch (error) {
      ctx.log.debug(`preparing failed: ${(error as Error).message}`);
    }
  }
  background.seal();
}

function failureOf(error: unknown, debug: boolean): FailureDetail {
  if (!(error instanceof Error)) return { message: String(error) };
  return {
    message: error.message,
    ...(error instanceof UserError && error.hint ? { hint: error.hint } : {}),
    ...(debug && error.stack ? { stack: error.stack } : {}),
  };
}

function printResult(printer: Printer, result: StageResult, width: number, planOnly: boolean, debug: boolean): void {
  const duration = "durationMs" in result ? `${String(result.durationMs).padStart(6)} ms` : "";
  const outcome = result.outcome === "pending" ? "would change" : result.outcome;
  printer.line(`  ${result.name.padEnd(width)}  ${outcome.padEnd(12)} ${duration}`.trimEnd());
  const indent = (text: string) => text.replace(/^/gm, "      ");
  if (result.outcome === "skipped") printer.line(indent(result.reason));
  if (result.outcome === "failed") {
    printer.line(indent(result.error.message));
    if (result.error.hint) printer.line(indent(`hint: ${result.error.hint}`));
    if (result.error.stack) printer.line(indent(result.error.stack));
  }
  if (result.outcome === "changed" || result.outcome === "pending") {
    for (const change of result.changes) {
      printer.line(indent(describeChange(change)));
      const diff = diffOf(change);
      if (diff && (planOnly || debug)) printer.line(indent(diff.trimEnd()));
    }
  }
}

function summarize(results: StageResult[], totalMs: number): string {
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
  const order = ["changed", "pending", "unchanged", "skipped", "failed", "not-run"] as const;
  const parts = order
    .filter((o) => counts.has(o))
    .map((o) => `${counts.get(o)} ${o === "pending" ? "would change" : o}`);
  return `${results.length} stages: ${parts.join(", ")} in ${(totalMs / 1000).toFixed(2)} s`;
}
