// Inputs an outside tester would try: each is refused with its file and
// line as an InputError (exit 2), never a crash (exit 70). The roster.yaml
// cases and what concerns every input are here; pins.json's and
// packages.txt's in hostile-pins.test.ts, random mutations in
// fuzzed-inputs.test.ts.
import type { Pins } from "./pins.ts";
import { execFileSync } from "node:child_process";
import { rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../core/errors.ts";
import { loadInputs } from "./index.ts";
import {
  COMMITTED,
  expectProblemAt,
  inputFolders,
  pinsText,
  rosterOf,
  USER,
  type HostileCase,
} from "../../test/support/input-folders.ts";

const { inputsWith, problemsOf } = inputFolders();

const laughs = [
  "users:",
  "  lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
  ...Array.from({ length: 9 }, (_, i) => `  lol${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(", ")}]`),
].join("\n");

const CASES: HostileCase[] = [
  [
    "an empty roster.yaml",
    { "roster.yaml": "" },
    "roster.yaml:1",
    /the file is empty .*an empty roster is refused: the next run would cut every account/,
  ],
  [
    "a roster.yaml of comments only",
    { "roster.yaml": "# nobody\n\n# yet\n" },
    "roster.yaml:1",
    /the file is empty \(only comments or blank lines\)/,
  ],
  [
    "users: with nothing under it",
    { "roster.yaml": "# the roster\nusers:\n" },
    "roster.yaml:2",
    /users: lists nobody; expected at least one user/,
  ],
  ["users: {}", { "roster.yaml": "users: {}\n" }, "roster.yaml:1", /users: lists nobody/],
  [
    "a billion laughs",
    { "roster.yaml": laughs },
    "roster.yaml:3",
    /an alias \(\*a0\): YAML aliases are refused \(this file has 81\)/,
  ],
  [
    "a single alias",
    { "roster.yaml": `${rosterOf("alice")}  bob: &x\n${USER}  carol: *x\n` },
    "roster.yaml:10",
    /an alias \(\*x\): YAML aliases are refused/,
  ],
  [
    "a roster that is a list",
    { "roster.yaml": "- alice\n- bob\n" },
    "roster.yaml:1",
    /expected a top-level users: map/,
  ],
  ["a roster that is a scalar", { "roster.yaml": "alice\n" }, "roster.yaml:1", /expected a top-level users: map/],
  [
    "users: as a list",
    { "roster.yaml": "users:\n  - alice\n" },
    "roster.yaml:2",
    /users: expected a map of OS user names/,
  ],
  [
    "a user __proto__",
    { "roster.yaml": rosterOf("alice", "__proto__") },
    "roster.yaml:6",
    /users\.__proto__: "__proto__" is refused as a key: JavaScript objects treat it specially/,
  ],
  [
    "a user constructor",
    { "roster.yaml": rosterOf("constructor") },
    "roster.yaml:2",
    /users\.constructor: "constructor" is refused as an OS user name: JavaScript objects treat it specially/,
  ],
  [
    "a user toString",
    { "roster.yaml": rosterOf("toString") },
    "roster.yaml:2",
    /users\.toString: not a valid OS user name/,
  ],
  ["a user hasOwnProperty", { "roster.yaml": rosterOf("hasOwnProperty") }, "roster.yaml:2", /not a valid OS user name/],
  [
    "a user root",
    { "roster.yaml": rosterOf("alice", "root") },
    "roster.yaml:6",
    /users\.root: "root" is refused as an OS user name: it is a Debian system account/,
  ],
  [
    "a user t3-dispatch",
    { "roster.yaml": rosterOf("t3-dispatch") },
    "roster.yaml:2",
    /"t3-dispatch" is refused as an OS user name: it is the builder's own service account/,
  ],
  [
    "a user nobody",
    { "roster.yaml": rosterOf("nobody") },
    "roster.yaml:2",
    /"nobody" is refused .* Debian system account/,
  ],
  [
    "a user named like a group the builder gives",
    { "roster.yaml": rosterOf("codex-shared") },
    "roster.yaml:2",
    /"codex-shared" is refused .* a group the builder gives users/,
  ],
  [
    "an authentik_user with a line break",
    { "roster.yaml": 'users:\n  alice:\n    authentik_user: "x\\nmerlin=wizard"\n    k8s_user: a\n    tier: admin\n' },
    "roster.yaml:3",
    /authentik_user: expected an Authentik user name/,
  ],
  [
    "a namespace that is not a DNS label",
    {
      "roster.yaml":
        "users:\n  bob:\n    authentik_user: b\n    k8s_user: b\n    tier: namespace-owner\n    namespaces: [Pay_Ments]\n",
    },
    "roster.yaml:6",
    /namespaces\.0: expected a Kubernetes namespace/,
  ],
  [
    "flow nesting 10,000 deep",
    { "roster.yaml": `users: ${"[".repeat(10_000)}` },
    "roster.yaml:1",
    /nested deeper than 32 levels/,
  ],
  [
    "block nesting 200 deep",
    { "roster.yaml": Array.from({ length: 200 }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n") },
    "roster.yaml:33",
    /nested deeper than 32 levels/,
  ],
  [
    "a duplicate user",
    { "roster.yaml": rosterOf("alice", "bob", "alice") },
    "roster.yaml:10",
    /users\.alice: appears twice in one map/,
  ],
  [
    "a duplicate key spelled two ways",
    { "roster.yaml": 'users:\n  alice:\n    tier: admin\n    "tier": admin\n' },
    "roster.yaml:4",
    /users\.alice\.tier: appears twice/,
  ],
  [
    "a key that is a list",
    { "roster.yaml": "users:\n  ? [a, b]\n  : 1\n" },
    "roster.yaml:2",
    /users: a key that is a list or map/,
  ],
  [
    "a tab-indented roster",
    { "roster.yaml": "users:\n\talice:\n\t\ttier: admin\n" },
    "roster.yaml:2",
    /Tabs are not allowed as indentation/,
  ],
  [
    "two YAML documents",
    { "roster.yaml": `${rosterOf("alice")}---\n${rosterOf("bob")}` },
    "roster.yaml:6",
    /a second YAML document/,
  ],
  [
    "invalid UTF-8",
    { "roster.yaml": Buffer.concat([Buffer.from("users:\n  al"), Buffer.from([0xff, 0xfe]), Buffer.from("ice:\n")]) },
    "roster.yaml:2",
    /not UTF-8: byte 12 \(0xff\)/,
  ],
  // Its first MiB ends on line 30843: the roster's 5 lines, then 34 bytes a line.
  [
    "a 10 MB roster",
    { "roster.yaml": `${rosterOf("alice")}${"# padding padding padding padding\n".repeat(300_000)}` },
    "roster.yaml:30843",
    /the file is \d+ bytes, more than the 1048576 \(1 MiB\) an input may have/,
  ],
  [
    "a roster key YAML reads as a boolean (True)",
    { "roster.yaml": rosterOf("alice", "True") },
    "roster.yaml:6",
    /users: the key True is a boolean to YAML, not a name; quote it \("True"\)/,
  ],
  [
    "a roster key YAML reads as null (~)",
    { "roster.yaml": rosterOf("~") },
    "roster.yaml:2",
    /users: the key ~ is null to YAML, not a name/,
  ],
  [
    "a roster key YAML reads as a number",
    { "roster.yaml": rosterOf("1001") },
    "roster.yaml:2",
    /users: the key 1001 is a number to YAML, not a name/,
  ],
];

describe("hostile inputs", () => {
  it.each(CASES)("refuses %s with file and line", async (_name, replace, where, message) => {
    expectProblemAt(await problemsOf(replace), where, message);
  });

  it("accepts what is unusual but valid: a BOM, CRLF lines, tab-indented JSON, a package named constructor", async () => {
    const pins = JSON.parse(pinsText) as Pins;
    const releases = Object.keys(pins.apt) as Array<keyof Pins["apt"]>;
    for (const key of releases) pins.apt[key] = { constructor: "1.0-1", ...pins.apt[key] };
    const release = releases[0]!;
    const dir = inputsWith({
      "roster.yaml": `\ufeff${COMMITTED["roster.yaml"].toString("utf8").replaceAll("\n", "\r\n")}`,
      "pins.json": JSON.stringify(pins, null, "\t"),
      "packages.txt": `${COMMITTED["packages.txt"]}constructor\n`,
    });
    const inputs = await loadInputs(dir);
    expect(Object.keys(inputs.roster)).toEqual(["wizard", "alice", "bob"]);
    expect(inputs.pins.apt[release]!.constructor).toBe("1.0-1");
    // A lookup of a name the file does not hold finds nothing, whatever the name.
    expect(inputs.roster.constructor).toBeUndefined();
    expect(inputs.pins.apt[release]!.hasOwnProperty).toBeUndefined();
    expect((inputs.pins.apt as Record<string, unknown>).hasOwnProperty).toBeUndefined();
  });

  it("refuses an input that is not a regular file (a FIFO, a link to /dev/zero) at once, without waiting or reading it", async () => {
    const dir = inputsWith({});
    rmSync(path.join(dir, "pins.json"));
    execFileSync("mkfifo", [path.join(dir, "pins.json")]);
    rmSync(path.join(dir, "roster.yaml"));
    symlinkSync("/dev/zero", path.join(dir, "roster.yaml"));
    const error = (await loadInputs(dir).catch((e: unknown) => e)) as InputError;
    expect(error).toBeInstanceOf(InputError);
    expect(error.problems.map((p) => `${p.file}: ${p.message}`)).toEqual([
      `pins.json: cannot read ${dir}/pins.json: it is a FIFO, not a regular file`,
      `roster.yaml: cannot read ${dir}/roster.yaml: it is a device, not a regular file`,
    ]);
  });

  it("names the first 50 problems of a file and counts the rest", async () => {
    const problems = await problemsOf({
      "roster.yaml": `users:\n${Array.from({ length: 200 }, (_, i) => `  u${i}: 1\n`).join("")}`,
    });
    expect(problems).toHaveLength(51);
    expect(problems[50]).toEqual({
      file: "roster.yaml",
      line: 52,
      message: "and 150 more problems from here on; fix the ones above first",
    });
  });

  it("lets lock, and only lock, find packages.txt and pins.json apart", async () => {
    const replace = {
      "packages.txt": `${COMMITTED["packages.txt"]}htop\n`,
      "pins.json": pinsText.replace(/("apt": \{\n {4}"[a-z0-9.-]+": \{)/, '$1\n      "gone": "1.0",'),
    };
    const problems = await problemsOf(replace);
    const releases = Object.keys((JSON.parse(pinsText) as Pins).apt);
    // Each release's block is checked: htop is missing from every one, gone is in the first only.
    expect(problems.map((p) => p.message)).toEqual([
      ...releases.map((release) => expect.stringContaining(`htop has no apt pin for ${release} in pins.json`)),
      `apt.${releases[0]}.gone is pinned but not in packages.txt; remove the pin or run \`build.ts lock\``,
    ]);
    await expect(loadInputs(inputsWith(replace), { forLock: true })).resolves.toBeDefined();
  });
});
