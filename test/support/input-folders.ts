// --inputs folders for the input tests: the committed roster.yaml,
// pins.json and packages.txt with some replaced, each in a scratch folder
// that is removed after the test file.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, expect } from "vitest";
import { InputError, type InputProblem } from "../../lib/core/errors.ts";
import { loadInputs, type LoadOptions } from "../../lib/inputs/index.ts";

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
export const COMMITTED = {
  "roster.yaml": readFileSync(path.join(repo, "roster.yaml")),
  "pins.json": readFileSync(path.join(repo, "pins.json")),
  "packages.txt": readFileSync(path.join(repo, "packages.txt")),
};
export type InputFile = keyof typeof COMMITTED;
export type Replaced = Partial<Record<InputFile, string | Uint8Array>>;

export interface InputFolders {
  /** The folder they are made in, for a test's other files (a --root). */
  scratch: string;
  /** An --inputs folder: the committed files with some replaced. */
  inputsWith(replace: Replaced): string;
  /** The problems loadInputs reports; fails the test on success or on any other error. */
  problemsOf(replace: Replaced, options?: LoadOptions): Promise<InputProblem[]>;
}

/** Call at a test file's top: its folders go when its tests are done. */
export function inputFolders(): InputFolders {
  const scratch = mkdtempSync(path.join(tmpdir(), "devvm-hostile-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  let dirs = 0;
  const inputsWith = (replace: Replaced) => {
    const dir = path.join(scratch, `inputs-${dirs++}`);
    mkdirSync(dir);
    for (const file of Object.keys(COMMITTED) as InputFile[])
      writeFileSync(path.join(dir, file), replace[file] ?? COMMITTED[file]);
    return dir;
  };
  const problemsOf = async (replace: Replaced, options: LoadOptions = {}) => {
    const error = await loadInputs(inputsWith(replace), options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error, "the inputs were accepted").toBeInstanceOf(InputError);
    return (error as InputError).problems;
  };
  return { scratch, inputsWith, problemsOf };
}

/** A hostile case: [name, replaced files, file:line expected, what the message says]. */
export type HostileCase = [string, Replaced, string, RegExp];

/** A problem at WHERE (file:line) says MESSAGE, and every problem names a line. */
export function expectProblemAt(problems: InputProblem[], where: string, message: RegExp): void {
  const text = problems.map((p) => `${p.file}:${p.line}: ${p.message}`).join("\n");
  expect(
    problems.find((p) => `${p.file}:${p.line}` === where && message.test(p.message)),
    text,
  ).toBeDefined();
  for (const p of problems) expect(p.line, text).toBeGreaterThanOrEqual(1);
}

/** A roster user's lines below its name. */
export const USER = "    authentik_user: someone\n    k8s_user: someone\n    tier: power-user\n";
/** A roster of these users, four lines each, every one a person of their own. */
export const rosterOf = (...names: string[]) =>
  `users:\n${names.map((n, i) => `  ${n}:\n${USER.replaceAll("someone", `someone${i}`)}`).join("")}`;
export const pinsText = COMMITTED["pins.json"].toString("utf8");
