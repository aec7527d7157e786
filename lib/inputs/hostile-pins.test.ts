// pins.json and packages.txt as an outside tester would write them: each
// is refused with its file and line as an InputError (exit 2), never a crash
// (exit 70). The roster.yaml cases are in hostile-inputs.test.ts.
import { describe, it } from "vitest";
import {
  COMMITTED,
  expectProblemAt,
  inputFolders,
  pinsText,
  type HostileCase,
} from "../../test/support/input-folders.ts";

const { problemsOf } = inputFolders();

/** pins.json with one apt version replaced, its layout (and lines) kept. */
const pinsWithGit = (version: string) => pinsText.replace(/"git": "[^"]*"/, `"git": ${JSON.stringify(version)}`);
const lineOfText = (needle: string) => pinsText.split("\n").findIndex((l) => l.includes(needle)) + 1;
const gitLine = lineOfText('"git":');
/** The line of an entry put first in pins.json's apt map. */
const firstAptLine = lineOfText('"apt": {') + 2;
/** pins.json with a line put first in its first release's apt pins. */
const withFirstAptLine = (line: string) => pinsText.replace(/("apt": \{\n {4}"[a-z0-9.-]+": \{)/, `$1\n      ${line}`);

const CASES: HostileCase[] = [
  [
    "pins.json with a // comment",
    { "pins.json": pinsText.replace('  "node": {', '  // the runtime\n  "node": {') },
    "pins.json:3",
    /column 3: a comment \(\/\/\): JSON has no comments/,
  ],
  [
    "pins.json with a # comment",
    { "pins.json": pinsText.replace('  "node": {', '  # the runtime\n  "node": {') },
    "pins.json:3",
    /column 3: a comment \(#\)/,
  ],
  [
    "pins.json with a /* comment */",
    { "pins.json": `/* lock */ ${pinsText}` },
    "pins.json:1",
    /column 1: a comment \(\/\*\)/,
  ],
  [
    "pins.json with a trailing comma",
    { "pins.json": pinsText.replace(/("zsh": "[^"]*")/, "$1,") },
    `pins.json:${lineOfText('"zsh"')}`,
    /a trailing comma before }: JSON allows none/,
  ],
  [
    "pins.json with a trailing comma in a list",
    { "pins.json": '{"node": [1, 2,]}' },
    "pins.json:1",
    /column 15: a trailing comma before \]/,
  ],
  ["pins.json with single quotes", { "pins.json": "{'node': 1}" }, "pins.json:1", /column 2: a single-quoted string/],
  ["pins.json with a bare key", { "pins.json": "{\n  node: 1\n}" }, "pins.json:2", /column 3: a key without quotes/],
  [
    "pins.json with a duplicate key",
    { "pins.json": withFirstAptLine('"git": "1.0",') },
    `pins.json:${gitLine + 1}`,
    /apt\.[a-z0-9.-]+\.git: appears twice in one object/,
  ],
  [
    "pins.json with a __proto__ key",
    { "pins.json": withFirstAptLine('"__proto__": {},') },
    `pins.json:${firstAptLine}`,
    /apt\.[a-z0-9.-]+\.__proto__: "__proto__" is refused as a key/,
  ],
  [
    "pins.json written as YAML",
    { "pins.json": "node:\n  version: 22.23.3\n" },
    "pins.json:1",
    /column 1: expected a value/,
  ],
  ["an empty pins.json", { "pins.json": "" }, "pins.json:1", /the file is empty: expected a JSON object/],
  [
    "a pins.json cut short",
    { "pins.json": pinsText.slice(0, 200) },
    "pins.json:5",
    /column 18: a string that is never closed/,
  ],
  [
    "pins.json nested 10,000 deep",
    { "pins.json": `{"node": ${"[".repeat(10_000)}` },
    "pins.json:1",
    /nested deeper than 32 levels/,
  ],
  [
    "an apt version 1:",
    { "pins.json": pinsWithGit("1:") },
    `pins.json:${gitLine}`,
    /apt\.[a-z0-9.-]+\.git: "1:" is not an exact Debian version: the epoch 1: must be followed by an upstream version that starts with a digit/,
  ],
  [
    "an apt version with an empty revision",
    { "pins.json": pinsWithGit("2.39.5-") },
    `pins.json:${gitLine}`,
    /the revision \(after the last -\)/,
  ],
  [
    "an apt version with a letter epoch",
    { "pins.json": pinsWithGit("x:2.39.5") },
    `pins.json:${gitLine}`,
    /an epoch \(before the first :\) is digits only/,
  ],
  [
    "an apt version with a colon but no epoch",
    { "pins.json": pinsWithGit("2.39:5") },
    `pins.json:${gitLine}`,
    /an epoch .* is digits only/,
  ],
  [
    "an apt pin for a name that is no Debian package",
    { "pins.json": withFirstAptLine('"Git Tools": "1.0",') },
    `pins.json:${firstAptLine}`,
    /apt\.[a-z0-9.-]+\.Git Tools: expected a Debian package name/,
  ],
  [
    "a package without an apt pin",
    { "packages.txt": `${COMMITTED["packages.txt"]}htop\n` },
    `packages.txt:${COMMITTED["packages.txt"].toString().split("\n").length}`,
    /htop has no apt pin for [a-z0-9.-]+ in pins\.json; run `build\.ts lock`/,
  ],
];

describe("hostile inputs", () => {
  it.each(CASES)("refuses %s with file and line", async (_name, replace, where, message) => {
    expectProblemAt(await problemsOf(replace), where, message);
  });
});
