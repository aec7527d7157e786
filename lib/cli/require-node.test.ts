import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { MINIMUM_NODE, unsupportedNode } from "./require-node.ts";

describe("the Node the builder runs on", () => {
  it("refuses Node 18 and anything before what undici needs, in one line naming both versions", () => {
    const refusal = unsupportedNode("v18.19.0");
    expect(refusal).toMatch(/^error: the devvm builder needs Node\.js 20\.18\.1 or newer, and this is v18\.19\.0 /);
    expect(refusal).not.toContain("\n");
    expect(unsupportedNode("v20.18.0")).toBeDefined();
    for (const ok of ["v20.18.1", "v20.20.2", "v22.16.0", "v24.1.0"]) expect(unsupportedNode(ok), ok).toBeUndefined();
  });

  it("is what package.json's engines and undici's own engines say", () => {
    const own = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      engines: { node: string };
    };
    const undici = JSON.parse(
      readFileSync(new URL("../../node_modules/undici/package.json", import.meta.url), "utf8"),
    ) as { engines: { node: string } };
    expect(own.engines.node).toBe(`>=${MINIMUM_NODE}`);
    expect(undici.engines.node).toBe(`>=${MINIMUM_NODE}`);
  });

  it("build.ts on a Node that says it is 18 prints the refusal alone, exit 2; the check is build.ts's first import", () => {
    // The version is all the check reads: a preload makes this Node report 18's.
    const asNode18 = `data:text/javascript,Object.defineProperty(process, "version", { value: "v18.20.4" })`;
    const run = spawnSync(process.execPath, ["--import", asNode18, "--import", "tsx", "build.ts", "--help"], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
      encoding: "utf8",
    });
    expect(run.status).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(`${unsupportedNode("v18.20.4")}\n`);
    // ES modules run in import order: first, it runs before undici loads (and crashes on a real Node 18).
    const firstImport = readFileSync(new URL("../../build.ts", import.meta.url), "utf8").match(/^import .*$/m)?.[0];
    expect(firstImport).toBe(`import "./lib/cli/require-node.ts";`);
  });
});
