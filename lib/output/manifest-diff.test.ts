import { describe, expect, it } from "vitest";
import type { Manifest } from "./manifest.ts";
import { diffManifests, formatDifferences } from "./manifest-diff.ts";

const base: Manifest = {
  manifestVersion: 1,
  paths: [
    { path: "/etc/a", stage: "skel", type: "file", mode: "0644", owner: "root", group: "root", sha256: "aa" },
    { path: "/etc/b", stage: "skel", type: "symlink", mode: "0777", owner: "root", group: "root", target: "/x" },
  ],
  packages: [{ name: "apt:git", version: "1:2.39.5-0+deb12u2", stage: "apt" }],
};

describe("diffManifests", () => {
  it("finds nothing between equal manifests", () => {
    expect(diffManifests(base, structuredClone(base))).toEqual([]);
  });

  it("names the path, stage and fields that differ, and entries on one side only", () => {
    const other = structuredClone(base);
    other.paths[0]!.mode = "0600";
    other.paths[0]!.sha256 = "bb";
    other.paths.pop();
    other.paths.push({ path: "/etc/c", stage: "t3", type: "absent" });
    other.packages[0]!.version = "1:2.39.5-0+deb12u3";
    const differences = diffManifests(base, other);
    expect(differences).toEqual([
      { path: "/etc/a", stage: "skel", fields: { mode: ["0644", "0600"], sha256: ["aa", "bb"] } },
      { path: "/etc/b", stage: "skel", fields: { entry: ["symlink 0777 root:root -> /x", "(absent)"] } },
      { path: "/etc/c", stage: "t3", fields: { entry: ["(absent)", "absent"] } },
      { path: "package apt:git", stage: "apt", fields: { version: ["1:2.39.5-0+deb12u2", "1:2.39.5-0+deb12u3"] } },
    ]);
    expect(formatDifferences(differences, ["run 1", "run 2"])).toContain("/etc/a (stage skel):\n  mode: run 1 0644, run 2 0600");
  });
});
