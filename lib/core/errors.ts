// The small family of errors the builder knows. Only build.ts catches them,
// picks the exit code and exits; everything else throws.

/** Where in an input a problem is: file and, when known, line (1-based). */
export interface InputLocation {
  file: string;
  line?: number;
}

export interface InputProblem extends InputLocation {
  message: string;
}

/** How to run `build.ts lock` (which refreshes pins.json), for hints: bootstrap.sh on a box without Node (it brings the pinned one), the sources elsewhere. */
export const LOCK_COMMAND = "`./bootstrap.sh lock` (or `npx tsx build.ts lock` where Node and node_modules are)";

/** A mistake the user can fix; `hint` says how. */
export class UserError extends Error {
  override name = "UserError";
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Every problem found in the inputs, gathered so they are reported at once. */
export class InputError extends UserError {
  override name = "InputError";
  constructor(readonly problems: InputProblem[]) {
    super(problems.map(formatProblem).join("\n"));
  }
}

/** Another build holds the build lock (lib/core/build-lock.ts): exit 4. */
export class BuildRunningError extends UserError {
  override name = "BuildRunningError";
  constructor(
    readonly pid: number,
    readonly lockPath: string,
  ) {
    super(
      `another build is running (pid ${pid}, lock ${lockPath})`,
      "wait for it to finish, or stop it; a lock left by a killed build is taken over by itself",
    );
  }
}

/** A command a stage ran failed: shows the command, its exit code and the tail of its stderr. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`\`${command}\` exited with ${exitCode ?? "a signal"}${stderr.trim() ? `:\n${tail(stderr, 12)}` : ""}`);
  }
}

/** Something the builder got wrong, not the user. */
export class BugError extends Error {
  override name = "BugError";
}

export function formatProblem(p: InputProblem): string {
  return `${p.file}${p.line ? `:${p.line}` : ""}: ${p.message}`;
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
