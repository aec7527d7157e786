import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../build.ts";
import { formatProblem, InputError } from "../core/errors.ts";
import { EXIT } from "./exit-code.ts";
import { buildAsync, inputsDir, REPO as repo } from "../../test/support/cli.ts";

// Issue 12, item 5: input that cannot crash the parser. Every case goes
// through main(), a few through the command line too: exit 2, the file and
// line named, nothing written, never exit 70. (lib/inputs/hostile-inputs.test.ts
// has more, and a fuzzer.)
describe("build.ts on hostile inputs", () => {
  const committed = (file: string) => readFileSync(path.join(repo, file), "utf8");
  const person = (name: string, i: number) =>
    `  ${name}:\n    authentik_user: person${i}\n    k8s_user: person${i}\n    tier: power-user\n`;
  const rosterOf = (...names: string[]) => `users:\n${names.map(person).join("")}`;
  const pins = committed("pins.json");
  /** The first release of pins.json's apt pins: where the cases below put their apt lines. */
  const FIRST_RELEASE = Object.keys((JSON.parse(pins) as { apt: object }).apt)[0]!;
  const lineIn = (text: string, needle: string) => text.split("\n").findIndex((l) => l.includes(needle)) + 1;
  const laughs = [
    "users:",
    "  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ...Array.from({ length: 9 }, (_, i) => `  a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(", ")}]`),
  ].join("\n");
  const packagesLines = committed("packages.txt").split("\n").length;
  const big = `${rosterOf("alice")}${`${"#".repeat(99)}\n`.repeat(100_000)}`;

  // [case, file, its text, "file:line" the error names, what it says, extra arguments]
  const CASES: Array<[string, string, string | Buffer, string, string, string[]?]> = [
    ["an empty roster", "roster.yaml", "", "roster.yaml:1", "the file is empty"],
    [
      "a comments-only roster",
      "roster.yaml",
      "# nobody\n# yet\n",
      "roster.yaml:1",
      "an empty roster is refused: the next run would cut every account",
    ],
    ["users: with nobody", "roster.yaml", "users:\n", "roster.yaml:1", "users: lists nobody"],
    [
      "a billion laughs",
      "roster.yaml",
      laughs,
      "roster.yaml:3",
      "an alias (*a0): YAML aliases are refused (this file has 81)",
    ],
    [
      "a roster that is a list",
      "roster.yaml",
      "- wizard\n- alice\n",
      "roster.yaml:1",
      "expected a top-level users: map",
    ],
    ["a roster that is a scalar", "roster.yaml", "wizard\n", "roster.yaml:1", "expected a top-level users: map"],
    [
      "a user __proto__",
      "roster.yaml",
      rosterOf("alice", "__proto__"),
      "roster.yaml:6",
      'users.__proto__: "__proto__" is refused as a key',
    ],
    [
      "a user constructor",
      "roster.yaml",
      rosterOf("constructor"),
      "roster.yaml:2",
      '"constructor" is refused as an OS user name: JavaScript objects treat it specially',
    ],
    [
      "a user toString",
      "roster.yaml",
      rosterOf("toString"),
      "roster.yaml:2",
      "users.toString: not a valid OS user name",
    ],
    [
      "a user root",
      "roster.yaml",
      rosterOf("root"),
      "roster.yaml:2",
      '"root" is refused as an OS user name: it is a Debian system account',
    ],
    [
      "a user t3-dispatch",
      "roster.yaml",
      rosterOf("alice", "t3-dispatch"),
      "roster.yaml:6",
      '"t3-dispatch" is refused as an OS user name: it is the builder\'s own service account',
    ],
    [
      "flow nesting 100,000 deep",
      "roster.yaml",
      `users: ${"[".repeat(100_000)}${"]".repeat(100_000)}`,
      "roster.yaml:1",
      "nested deeper than 32 levels",
    ],
    [
      "a duplicate user",
      "roster.yaml",
      rosterOf("alice", "alice"),
      "roster.yaml:6",
      "users.alice: appears twice in one map; keep one",
    ],
    [
      "a tab-indented roster",
      "roster.yaml",
      "users:\n\talice:\n\t\ttier: admin\n",
      "roster.yaml:2",
      "Tabs are not allowed as indentation",
    ],
    [
      "invalid UTF-8",
      "roster.yaml",
      Buffer.concat([Buffer.from(rosterOf("alice")), Buffer.from([0xc3, 0x28])]),
      "roster.yaml:6",
      "not UTF-8",
    ],
    // Named at the line where the first MiB ends.
    [
      "a 10 MB roster",
      "roster.yaml",
      big,
      `roster.yaml:${big.slice(0, 1 << 20).split("\n").length}`,
      "more than the 1048576 (1 MiB) an input may have",
    ],
    [
      "pins.json with a // comment",
      "pins.json",
      pins.replace('  "node": {', '  // the runtime\n  "node": {'),
      "pins.json:3",
      "column 3: a comment (//): JSON has no comments",
    ],
    [
      "pins.json with a # comment",
      "pins.json",
      pins.replace('  "node": {', '  # the runtime\n  "node": {'),
      "pins.json:3",
      "column 3: a comment (#)",
    ],
    [
      "pins.json with a trailing comma",
      "pins.json",
      pins.replace(/("zsh": "[^"]*")/, "$1,"),
      `pins.json:${lineIn(pins, '"zsh"')}`,
      "a trailing comma before }: JSON allows none",
    ],
    [
      "an apt version 1:",
      "pins.json",
      pins.replace(/"git": "[^"]*"/, '"git": "1:"'),
      `pins.json:${lineIn(pins, '"git"')}`,
      `apt.${FIRST_RELEASE}.git: "1:" is not an exact Debian version`,
    ],
    ...[[], ["--plan"], ["--stage", "kubectl"], ["offboard", "nobody-here"]].map(
      (mode): [string, string, string, string, string, string[]] => [
        `a package without an apt pin (${mode.join(" ") || "a build"})`,
        "packages.txt",
        `${committed("packages.txt")}htop\n`,
        `packages.txt:${packagesLines}`,
        `htop has no apt pin for ${FIRST_RELEASE} in pins.json; run \`build.ts lock\``,
        mode,
      ],
    ),
  ];

  /** Fresh inputs with `file` replaced, an empty root and output; removed afterwards. */
  async function withInputs<T>(
    file: string,
    text: string | Buffer,
    run: (dirs: { dir: string; root: string; output: string }) => Promise<T>,
  ): Promise<T> {
    const dirs = {
      dir: inputsDir(),
      root: mkdtempSync(path.join(tmpdir(), "devvm-root-")),
      output: mkdtempSync(path.join(tmpdir(), "devvm-output-")),
    };
    try {
      writeFileSync(path.join(dirs.dir, file), text);
      return await run(dirs);
    } finally {
      for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
    }
  }

  // In this process, through main() itself: fast enough for every case.
  // build.ts turns an InputError into exit 2 (the CLI cases below show it).
  it.each(CASES)(
    "refuses %s as an InputError naming file and line, nothing written",
    async (_name, file, text, where, message, mode = ["--stage", "skel"]) => {
      await withInputs(file, text, async ({ dir, root, output }) => {
        const error = await main([...mode, "--root", root, "--output", output, "--inputs", dir]).then(
          (code) => new Error(`main() returned ${code}`),
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(InputError);
        const lines = (error as InputError).problems.map(formatProblem);
        expect(
          lines.some((line) => line.startsWith(`${where}: `) && line.includes(message)),
          lines.join("\n"),
        ).toBe(true);
        expect(readdirSync(root)).toEqual([]);
        expect(readdirSync(output)).toEqual([]);
      });
    },
  );

  // The real command line for a few: exit 2, the problems on stderr, no stack, nothing written.
  const CLI = [
    "an empty roster",
    "a billion laughs",
    "a user __proto__",
    "pins.json with a // comment",
    "a 10 MB roster",
    "a package without an apt pin (--plan)",
  ];
  it.concurrent.each(CASES.filter(([name]) => CLI.includes(name)))(
    "exits 2 on %s, naming file and line",
    { timeout: 60_000 },
    async (_name, file, text, where, message, mode = ["--stage", "skel"]) => {
      await withInputs(file, text, async ({ dir, root, output }) => {
        const { code, stderr } = await buildAsync(...mode, "--root", root, "--output", output, "--inputs", dir);
        expect(code, stderr).toBe(EXIT.badInput);
        expect(stderr).toMatch(/^error: the inputs have \d+ problems?; nothing was changed\n/);
        expect(
          stderr.split("\n").some((line) => line.startsWith(`${where}: `) && line.includes(message)),
          stderr,
        ).toBe(true);
        expect(stderr).not.toMatch(/^bug:|\n {4}at /m);
        expect(readdirSync(root)).toEqual([]);
        expect(readdirSync(output)).toEqual([]);
      });
    },
  );

  it("takes names JavaScript treats specially as ordinary authentik and k8s users", async () => {
    const dir = inputsDir();
    const root = mkdtempSync(path.join(tmpdir(), "devvm-root-"));
    try {
      const special = ["__proto__", "constructor", "toString"].map(
        (name, i) => `  user${i}:\n    authentik_user: ${name}\n    k8s_user: ${name}\n    tier: power-user\n`,
      );
      writeFileSync(path.join(dir, "roster.yaml"), `users:\n${special.join("")}`);
      const { code, stderr } = await buildAsync("--plan", "--root", root, "--stage", "skel", "--inputs", dir);
      expect(code, stderr).toBe(EXIT.changesPending);
    } finally {
      for (const d of [dir, root]) rmSync(d, { recursive: true, force: true });
    }
  });
});
