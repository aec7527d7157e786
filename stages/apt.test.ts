import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { makeTestRoot } from "../lib/test-context.ts";
import stage, { installedVersions } from "./apt.ts";

describe("apt", () => {
  it("reads installed versions from dpkg's database and leaves out what is not installed", async () => {
    using root = makeTestRoot();
    const versions = await installedVersions(root.ctx, ["dpkg", "devvm-no-such-package"]);
    expect(versions.get("dpkg")).toBe(execFileSync("dpkg-query", ["-W", "-f=${Version}", "dpkg"], { encoding: "utf8" }));
    expect(versions.has("devvm-no-such-package")).toBe(false);
  });

  it("never installs under --root, and says so", async () => {
    using root = makeTestRoot();
    expect(await stage.check(root.ctx)).toEqual({ skip: expect.stringContaining("not under --root") });
  });
});
