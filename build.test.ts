// The CLI end to end, on a temporary --root (the container tests under
// test/ do the same on a booted Debian).
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { closedPort } from "./lib/test-context.ts";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXIT } from "./lib/cli.ts";
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
  const run = spawnSync(process.execPath, ["--import", "tsx", path.join(repo, "build.ts"), ...args], { encoding: "utf8", env, ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}) });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A folder of inputs: the committed roster, packages.txt and pins.json, each replaceable. */
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
        const { code, stderr } = build("--root", root, "--output", output, "--inputs", inputs, "--stage", "node,kubectl", ...mode);
        expect(code, stderr).toBe(EXIT.badInput);
        expect(stderr).toContain("error: pins.json lacks 2 values the selected stages need; nothing was changed:\n  pins.json: node.integrity is missing (stage node)\n  pins.json: kubectl.sha256 is missing (stage kubectl)\nhint: run `npx tsx build.ts lock`");
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
      for (const entry of ["node.integrity", "node.npm", "npm.@anthropic-ai/claude-code", "npm.@openai/codex", "npm.t3", "kubelogin", "kubectl"]) {
        expect(stderr).toMatch(new RegExp(`\\n  ${entry.replace(/[.@/]/g, "\\$&")}: GET ${closed}/\\S+: the connection was refused \\(ECONNREFUSED\\)`));
      }
      expect(stderr).not.toContain("up to date");
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
    const { code, stderr } = buildWith({ env: { VAULT_ADDR: "vault.example:8200" } }, "--root", root, "--output", output, "--plan", "--stage", "skel");
    expect(code).toBe(EXIT.badInput);
    expect(stderr).toContain("environment VAULT_ADDR: expected a URL that starts with http:// or https://");
    expect(readdirSync(root)).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)("refuses a build and the lock when not root: one line, exit 5, nothing written", () => {
    for (const args of [["--root", root, "--output", output, "--stage", "skel"], ["lock", "--output", output]]) {
      const { code, stderr } = buildWith({ uid: 65534, env: { HOME: tmpdir() } }, ...args);
      expect(code, stderr).toBe(EXIT.notRoot);
      expect(stderr).toBe("error: build.ts must run as root, not as uid 65534: run it again as root, e.g. with sudo\n");
    }
    expect(readdirSync(root)).toEqual([]);
    expect(readdirSync(output)).toEqual([]);
  });
});
