import { readFileSync } from "node:fs";
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
    const own = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { engines: { node: string } };
    const undici = JSON.parse(readFileSync(new URL("../node_modules/undici/package.json", import.meta.url), "utf8")) as { engines: { node: string } };
    expect(own.engines.node).toBe(`>=${MINIMUM_NODE}`);
    expect(undici.engines.node).toBe(`>=${MINIMUM_NODE}`);
  });
});
