// How a command ends, and the one place that maps that to the exit code.
import { BugError, BuildRunningError, InputError, UserError } from "../core/errors.ts";
import { NotRootError } from "../../stages/preflight.ts";

export const EXIT = {
  ok: 0,
  stageFailed: 1,
  badInput: 2,
  changesPending: 3,
  buildRunning: 4,
  notRoot: 5,
  bug: 70,
} as const;

/** How a command ended, when it did not throw. */
export type CommandOutcome =
  | { outcome: "ok" }
  /** --plan: something would change. */
  | { outcome: "changes-pending" }
  /** A stage failed (`error`, what failed it), or lock left an entry of pins.json unresolved. */
  | { outcome: "failed"; error?: unknown };

/** A command that threw: what build.ts caught. */
export interface Thrown {
  outcome: "threw";
  error: unknown;
}

export function exitCodeOf(ending: CommandOutcome | Thrown): number {
  if (ending.outcome === "ok") return EXIT.ok;
  if (ending.outcome === "changes-pending") return EXIT.changesPending;
  // The build could not start: the same code whether preflight (a failed stage) or the command line met it.
  if (ending.error instanceof BuildRunningError) return EXIT.buildRunning;
  if (ending.error instanceof NotRootError) return EXIT.notRoot;
  if (ending.outcome === "failed") return EXIT.stageFailed;
  return ending.error instanceof UserError ? EXIT.badInput : EXIT.bug;
}

/** What build.ts prints for an error a command threw, line by line: the stack only for a bug (any bug under --debug). */
export function describeError(error: unknown, debug: boolean): string[] {
  if (error instanceof InputError) {
    const count = `${error.problems.length} problem${error.problems.length === 1 ? "" : "s"}`;
    return [`error: the inputs have ${count}; nothing was changed\n${error.message}`];
  }
  if (error instanceof UserError) return [`error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`];
  const bug = `bug: ${error instanceof Error ? error.message : String(error)}`;
  if (!debug && error instanceof BugError) return [bug];
  return [bug, error instanceof Error ? (error.stack ?? "") : ""];
}
