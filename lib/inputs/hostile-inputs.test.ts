// Inputs an outside tester would try: each is refused with its file and
// line as an InputError (exit 2), never a crash (exit 70); and random byte
// mutations of the committed inputs never end in anything else.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { InputError, type InputProblem } from "../core/errors.ts";
import { loadInputs, type LoadOptions } from "./index.ts";

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const COMMITTED = {
  "roster.yaml": readFileSync(path.join(repo, "roster.yaml")),
  "pins.json": readFileSync(path.join(repo, "pins.json")),
  "packages.txt": readFileSync(path.join(repo, "packages.txt")),
};
type InputFile = keyof typeof COMMITTED;

const scratch = mkdtempSync(path.join(tmpdir(), "devvm-hostile-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;

/** An --inputs folder: the committed files with some replaced. */
function inputsWith(replace: Partial<Record<InputFile, string | Uint8Array>>): string {
  const dir = path.join(scratch, `inputs-${dirs++}`);
  mkdirSync(dir);
  for (const file of Object.keys(COMMITTED) as InputFile[])
    writeFileSync(path.join(dir, file), replace[file] ?? COMMITTED[file]);
  return dir;
}

/** The problems loadInputs reports; fails the test on success or on any other error. */
async function problemsOf(
  replace: Partial<Record<InputFile, string | Uint8Array>>,
  options: LoadOptions = {},
): Promise<InputProblem[]> {
  const error = await loadInputs(inputsWith(replace), options).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the inputs were accepted").toBeInstanceOf(InputError);
  return (error as InputError).problems;
}

const USER = "    authentik_user: someone\n    k8s_user: someone\n    tier: power-user\n";
/** A roster of these users, four lines each, every one a person of their own. */
const rosterOf = (...names: string[]) =>
  `users:\n${names.map((n, i) => `  ${n}:\n${USER.replaceAll("someone", `someone${i}`)}`).join("")}`;
const pinsText = COMMITTED["pins.json"].toString("utf8");
/** pins.json with one apt version replaced, its layout (and lines) kept. */
const pinsWithGit = (version: string) => pinsText.replace(/"git": "[^"]*"/, `"git": ${JSON.stringify(version)}`);
const lineOfText = (needle: string) => pinsText.split("\n").findIndex((l) => l.includes(needle)) + 1;
const gitLine = lineOfText('"git":');
/** The line of an entry put first in pins.json's apt map. */
const firstAptLine = lineOfText('"apt": {') + 1;

const laughs = [
  "users:",
  "  lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
  ...Array.from({ length: 9 }, (_, i) => `  lol${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(", ")}]`),
].join("\n");

// [name, replaced files, file:line expected, what the message says]
const CASES: Array<[string, Partial<Record<InputFile, string | Uint8Array>>, string, RegExp]> = [
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
    { "pins.json": pinsText.replace('"apt": {', '"apt": {\n    "git": "1.0",') },
    `pins.json:${gitLine + 1}`,
    /apt\.git: appears twice in one object/,
  ],
  [
    "pins.json with a __proto__ key",
    { "pins.json": pinsText.replace('"apt": {', '"apt": {\n    "__proto__": {},') },
    `pins.json:${firstAptLine}`,
    /apt\.__proto__: "__proto__" is refused as a key/,
  ],
  [
    "pins.json written as YAML",
    { "pins.json": "node:\n  version: 22.23.3\n" },
    "pins.json:1",
    /column 1: expected a value/,
  ],
  ["an empty pins.json", { "pins.json": "" }, "pins.json:1", /the file is empty: expected a JSON object/],
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
    /apt\.git: "1:" is not an exact Debian version: the epoch 1: must be followed by an upstream version that starts with a digit/,
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
    { "pins.json": pinsText.replace('"apt": {', '"apt": {\n    "Git Tools": "1.0",') },
    `pins.json:${firstAptLine}`,
    /apt\.Git Tools: expected a Debian package name/,
  ],
  [
    "a package without an apt pin",
    { "packages.txt": `${COMMITTED["packages.txt"]}htop\n` },
    `packages.txt:${COMMITTED["packages.txt"].toString().split("\n").length}`,
    /htop has no apt pin in pins\.json; run `build\.ts lock`/,
  ],
];

describe("hostile inputs", () => {
  it.each(CASES)("refuses %s with file and line", async (_name, replace, where, message) => {
    const problems = await problemsOf(replace);
    const text = problems.map((p) => `${p.file}:${p.line}: ${p.message}`).join("\n");
    expect(
      problems.find((p) => `${p.file}:${p.line}` === where && message.test(p.message)),
      text,
    ).toBeDefined();
    for (const p of problems) expect(p.line, text).toBeGreaterThanOrEqual(1);
  });

  it("accepts what is unusual but valid: a BOM, CRLF lines, tab-indented JSON, a package named constructor", async () => {
    const pins = JSON.parse(pinsText.replace('"apt": {', '"apt": {\n    "constructor": "1.0-1",')) as unknown;
    const dir = inputsWith({
      "roster.yaml": `\ufeff${COMMITTED["roster.yaml"].toString("utf8").replaceAll("\n", "\r\n")}`,
      "pins.json": JSON.stringify(pins, null, "\t"),
      "packages.txt": `${COMMITTED["packages.txt"]}constructor\n`,
    });
    const inputs = await loadInputs(dir);
    expect(Object.keys(inputs.roster)).toEqual(["wizard", "alice", "bob"]);
    expect(inputs.pins.apt.constructor).toBe("1.0-1");
    // A lookup of a name the file does not hold finds nothing, whatever the name.
    expect(inputs.roster.constructor).toBeUndefined();
    expect(inputs.pins.apt.hasOwnProperty).toBeUndefined();
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
      "pins.json": pinsText.replace('"apt": {', '"apt": {\n    "gone": "1.0",'),
    };
    const problems = await problemsOf(replace);
    expect(problems.map((p) => p.message)).toEqual([
      expect.stringContaining("htop has no apt pin"),
      expect.stringContaining("apt.gone is pinned but not in packages.txt"),
    ]);
    await expect(loadInputs(inputsWith(replace), { forLock: true })).resolves.toBeDefined();
  });

  it("refuses the target root's system accounts and groups, and adopts its people", async () => {
    const root = path.join(scratch, "root");
    mkdirSync(path.join(root, "etc"), { recursive: true });
    writeFileSync(
      path.join(root, "etc/passwd"),
      "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/zsh\nghost:x:65000:65000::/:/bin/false\n",
    );
    writeFileSync(path.join(root, "etc/group"), "root:x:0:\nssl-cert:x:110:postgres\nalice:x:1001:\n");
    const problems = await problemsOf({ "roster.yaml": rosterOf("alice", "postgres", "ssl-cert", "ghost") }, { root });
    expect(problems).toEqual([
      {
        file: "roster.yaml",
        line: 6,
        message: `users.postgres: postgres is a system account on this machine (uid 105 in ${root}/etc/passwd), not a person's (uid 1000 to 59999): choose another OS user name`,
      },
      {
        file: "roster.yaml",
        line: 10,
        message: `users.ssl-cert: ssl-cert is a system group on this machine (gid 110 in ${root}/etc/group); an account of that name could not have its own group: choose another OS user name`,
      },
      {
        file: "roster.yaml",
        line: 14,
        message: expect.stringContaining("users.ghost: ghost is a system account on this machine (uid 65000"),
      },
    ]);
    await expect(loadInputs(inputsWith({ "roster.yaml": rosterOf("alice", "bob") }), { root })).resolves.toBeDefined();
  });
});

/** mulberry32: a small seeded generator, so a failure is reproducible by its seed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Bytes that mean something to YAML, JSON or a line-based parser, and a few that are no UTF-8.
const INTERESTING = Buffer.from(":-[]{},&*!|>#\"'\n\t\r \\%@`?0~_", "latin1");
const BAD_BYTES = [0x00, 0xff, 0xc3, 0xe2, 0x80];

function mutate(bytes: Buffer, next: () => number): Buffer {
  const at = Math.floor(next() * (bytes.length + 1));
  const pick = (from: ArrayLike<number>) => from[Math.floor(next() * from.length)]!;
  const span = 1 + Math.floor(next() * 40);
  switch (Math.floor(next() * 6)) {
    case 0:
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(INTERESTING)]), bytes.subarray(at)]);
    case 1:
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + span)]);
    case 2:
      return Buffer.concat([bytes.subarray(0, at + span), bytes.subarray(at)]);
    case 3: {
      const copy = Buffer.from(bytes);
      if (at < copy.length) copy[at] = pick(INTERESTING);
      return copy;
    }
    case 4:
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(BAD_BYTES)]), bytes.subarray(at)]);
    default:
      return bytes.subarray(0, at);
  }
}

describe("fuzzed inputs", () => {
  it.each(Object.keys(COMMITTED) as InputFile[])(
    "random mutations of the committed %s end in the inputs or an InputError with lines, never a crash",
    async (file) => {
      const seed = 0x5eed + file.length;
      const next = random(seed);
      let refused = 0;
      for (let i = 0; i < 300; i++) {
        let bytes: Buffer = COMMITTED[file];
        for (let m = 1 + Math.floor(next() * 3); m > 0; m--) bytes = mutate(bytes, next);
        const outcome = await loadInputs(inputsWith({ [file]: bytes })).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (outcome === undefined) continue;
        refused++;
        const where = `seed ${seed}, iteration ${i}: ${JSON.stringify(bytes.toString("latin1"))}`;
        expect(outcome, `${where}: ${(outcome as Error).stack}`).toBeInstanceOf(InputError);
        for (const p of (outcome as InputError).problems)
          expect(p.line, `${where}: ${p.message}`).toBeGreaterThanOrEqual(1);
      }
      // Most mutations break something; a fuzzer that never trips the parser proves nothing.
      expect(refused).toBeGreaterThan(100);
    },
  );
});
