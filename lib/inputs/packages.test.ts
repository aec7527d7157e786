import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parsePackages } from "./packages.ts";

describe("parsePackages", () => {
  it("reads one name per line, with inline comments and blank lines", () => {
    const { packages, problems } = parsePackages("# header\ngit\n\nzsh   # the shell\n  tmux\n#kubelogin\n");
    expect(problems).toEqual([]);
    expect(packages).toEqual([
      { name: "git", line: 2 },
      { name: "zsh", line: 4 },
      { name: "tmux", line: 5 },
    ]);
  });

  it("names both lines of a duplicate", () => {
    const { problems } = parsePackages("git\njq\ngit # again\n");
    expect(problems).toEqual([{ file: "packages.txt", line: 3, message: expect.stringContaining("lines 1 and 3") }]);
  });

  it("refuses names that are not Debian package names", () => {
    const { problems } = parsePackages("Git\nx\nfoo_bar\nok-name\n");
    expect(problems.map((p) => p.line)).toEqual([1, 2, 3]);
    expect(problems[0]!.message).toContain("not a valid Debian package name");
  });

  it("refuses two names on one line", () => {
    expect(parsePackages("git jq\n").problems[0]!.message).toContain("one package name per line");
  });

  it("refuses apt's kubelogin and says why", () => {
    const { problems } = parsePackages("git\nkubelogin   # the OIDC plugin\n");
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ line: 2, message: expect.stringContaining("Azure") });
  });

  it("accepts the real packages.txt, which has what later stages need", () => {
    const { packages, problems } = parsePackages(readFileSync(new URL("../../packages.txt", import.meta.url), "utf8"));
    expect(problems).toEqual([]);
    const names = packages.map((p) => p.name);
    // golang-go and unzip were once missing and a fresh box skipped a step.
    expect(names).toEqual(expect.arrayContaining(["golang-go", "unzip", "sudo", "git", "shellcheck"]));
    expect(names).not.toContain("kubelogin");
  });
});
