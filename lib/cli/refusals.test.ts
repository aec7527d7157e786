// What build.ts refuses before any stage runs, writing nothing: mistakes in
// the inputs and settings, pins.json without a hash the stages need (exit 2),
// a user who is not root (exit 5).
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXIT } from "./exit-code.ts";
import { build, buildWith, inputsDir, makeRootAndOutput, removeDirs, REPO as repo } from "../../test/support/cli.ts";

describe("build.ts refuses, before any stage", () => {
  let root: string;
  let output: string;
  beforeEach(() => void ({ root, output } = makeRootAndOutput()));
  afterEach(() => removeDirs(root, output));

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

  it("image refuses a release it does not support, naming those it does, and one pins.json has no apt pins for, exit 2", () => {
    const run = build("image", "--release", "debian-11", "--output", output);
    expect(run.code, run.stderr).toBe(EXIT.badInput);
    expect(run.stderr).toContain('unknown release "debian-11"');
    expect(run.stderr).toContain("debian-13, ubuntu-24.04, debian-12");
    expect(readdirSync(output)).toEqual([]);
    const inputs = inputsDir({ pins: (pins) => void delete (pins.apt as Record<string, unknown>)["ubuntu-24.04"] });
    try {
      const unpinned = build("image", "--release", "ubuntu-24.04", "--inputs", inputs, "--output", output);
      expect(unpinned.code, unpinned.stderr).toBe(EXIT.badInput);
      expect(unpinned.stderr).toContain(
        "pins.json has no apt pins for Ubuntu 24.04 LTS (noble) (apt.ubuntu-24.04): the image's release",
      );
      expect(unpinned.stderr).not.toContain("mmdebstrap");
      expect(readdirSync(output)).toEqual([]);
    } finally {
      rmSync(inputs, { recursive: true, force: true });
    }
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
});
