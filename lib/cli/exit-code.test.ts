import { describe, expect, it } from "vitest";
import { BugError, BuildRunningError, InputError, UserError } from "../core/errors.ts";
import { NotRootError } from "../../stages/preflight.ts";
import { describeError, EXIT, exitCodeOf } from "./exit-code.ts";

describe("the exit code", () => {
  it("of a command that ended: ok, changes pending, a stage failed", () => {
    expect(exitCodeOf({ outcome: "ok" })).toBe(EXIT.ok);
    expect(exitCodeOf({ outcome: "changes-pending" })).toBe(EXIT.changesPending);
    expect(exitCodeOf({ outcome: "failed" })).toBe(EXIT.stageFailed);
    expect(exitCodeOf({ outcome: "failed", error: new UserError("apt-get failed") })).toBe(EXIT.stageFailed);
  });

  it("says another build is running, or not root, alike whether preflight failed on it or it was thrown", () => {
    for (const outcome of ["failed", "threw"] as const) {
      expect(exitCodeOf({ outcome, error: new BuildRunningError(42, "/run/lock/devvm-build.lock") })).toBe(
        EXIT.buildRunning,
      );
      expect(exitCodeOf({ outcome, error: new NotRootError(1000) })).toBe(EXIT.notRoot);
    }
  });

  it("of a thrown error: a user's mistake is bad input, anything else a bug", () => {
    expect(exitCodeOf({ outcome: "threw", error: new InputError([{ file: "roster.yaml", message: "x" }]) })).toBe(
      EXIT.badInput,
    );
    expect(exitCodeOf({ outcome: "threw", error: new UserError("unknown stage") })).toBe(EXIT.badInput);
    expect(exitCodeOf({ outcome: "threw", error: new BugError("oops") })).toBe(EXIT.bug);
    expect(exitCodeOf({ outcome: "threw", error: new TypeError("x is undefined") })).toBe(EXIT.bug);
    expect(exitCodeOf({ outcome: "threw", error: "a string" })).toBe(EXIT.bug);
  });
});

describe("what build.ts prints for a thrown error", () => {
  it("counts the input problems, gives a user's mistake its hint, and a bug its stack unless it is a BugError", () => {
    const problems = [
      { file: "roster.yaml", line: 3, message: "a" },
      { file: "pins.json", message: "b" },
    ];
    expect(describeError(new InputError(problems), false)).toEqual([
      "error: the inputs have 2 problems; nothing was changed\nroster.yaml:3: a\npins.json: b",
    ]);
    expect(describeError(new UserError("no", "do this"), false)).toEqual(["error: no\nhint: do this"]);
    expect(describeError(new NotRootError(7), false)).toEqual([
      "error: build.ts must run as root, not as uid 7: run it again as root, e.g. with sudo",
    ]);
    expect(describeError(new BugError("known"), false)).toEqual(["bug: known"]);
    expect(describeError(new BugError("known"), true)).toEqual(["bug: known", expect.stringContaining("BugError")]);
    expect(describeError(new TypeError("odd"), false)).toEqual(["bug: odd", expect.stringContaining("TypeError: odd")]);
  });
});
