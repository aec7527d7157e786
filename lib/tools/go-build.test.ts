import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { UserError } from "../core/errors.ts";
import { readSettings } from "../inputs/settings.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";
import { goBuild, goBuildEnvironment, goModuleProblem, ownBuildCache } from "./go-build.ts";

// What Go 1.23 printed here, building the t3-dispatch fixture through the
// Go module proxy stand-in: a tampered zip, and a go.sum without the module.
const MISMATCH = `go: downloading example.invalid/Org/signon v1.0.0
verifying example.invalid/Org/signon@v1.0.0: checksum mismatch
\tdownloaded: h1:BpvtPctRvNpqrmHSNBEYnLmeX3XUJhWqnjr7AxpMqEA=
\tgo.sum:     h1:ML+1VpDiJXzk/4VyP8I/bqJA57iYg1OmnPds0G7bvwk=

SECURITY ERROR
This download does NOT match an earlier download recorded in go.sum.
The bits may have been replaced on the origin server, or an attacker may
have intercepted the download attempt.

For more information, see 'go help module-auth'.
`;
const MISSING = `main.go:38:2: missing go.sum entry for module providing package example.invalid/Org/signon (imported by example.invalid/t3-dispatch-stand-in); to add:
\tgo get example.invalid/t3-dispatch-stand-in
`;

describe("the go build's environment", () => {
  it("keeps everything go writes in the scratch folder, and fetches only what go.sum allows", () => {
    expect(goBuildEnvironment("/tmp/s", undefined)).toMatchObject({
      HOME: "/tmp/s",
      GOCACHE: "/tmp/s/cache",
      GOPATH: "/tmp/s/gopath",
      GOMODCACHE: "/tmp/s/mod",
      GOTMPDIR: "/tmp/s/tmp",
      GOENV: "off",
      GOTOOLCHAIN: "local",
      GOFLAGS: "-mod=readonly -modcacherw",
      GOSUMDB: "off",
    });
  });

  it("sets GOPROXY from the setting, and leaves Go's own default (no inherited one) when unset", () => {
    expect(goBuildEnvironment("/tmp/s", "http://127.0.0.1:3000").GOPROXY).toBe("http://127.0.0.1:3000");
    const unset = goBuildEnvironment("/tmp/s", undefined);
    // undefined removes the variable from the inherited environment.
    expect(Object.keys(unset)).toContain("GOPROXY");
    expect(unset.GOPROXY).toBeUndefined();
    expect(unset.GOPRIVATE).toBeUndefined();
  });
});

describe("a module go.sum refuses", () => {
  it("is named with go's lines: the module, both hashes, SECURITY ERROR", () => {
    expect(goModuleProblem(MISMATCH)).toEqual({
      kind: "checksum mismatch",
      lines: [
        "verifying example.invalid/Org/signon@v1.0.0: checksum mismatch",
        "\tdownloaded: h1:BpvtPctRvNpqrmHSNBEYnLmeX3XUJhWqnjr7AxpMqEA=",
        "\tgo.sum:     h1:ML+1VpDiJXzk/4VyP8I/bqJA57iYg1OmnPds0G7bvwk=",
        "SECURITY ERROR",
      ],
    });
    expect(goModuleProblem(MISSING)).toEqual({ kind: "missing go.sum entry", lines: [MISSING.split("\n")[0]] });
    expect(goModuleProblem("./main.go:3:2: undefined: x\n")).toBeUndefined();
  });

  describe("by a go on PATH", () => {
    afterEach(() => {
      vi.unstubAllEnvs();
    });

    const fakeGo = (dir: string, stderr: string) => {
      const bin = path.join(dir, "bin");
      mkdirSync(bin);
      writeFileSync(path.join(bin, "said"), stderr);
      mkdirSync(path.join(dir, "src"));
      writeFileSync(path.join(bin, "go"), `#!/bin/sh\nenv > "${bin}/env"\ncat "${bin}/said" >&2\nexit 1\n`);
      chmodSync(path.join(bin, "go"), 0o755);
      vi.stubEnv("PATH", `${bin}:${process.env.PATH}`);
      vi.stubEnv("GOPROXY", "https://inherited.example");
      return bin;
    };

    it("stops the build with a user's error: go's lines, and a hint naming go.sum and the proxy setting", async () => {
      using root = makeTestRoot({ settings: readSettings({ DEVVM_GOPROXY: "http://127.0.0.1:3000" }) });
      const bin = fakeGo(root.dir, MISMATCH);
      const error = await goBuild(root.ctx, { source: `${root.dir}/src`, output: "/x", scratch: root.dir }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UserError);
      expect((error as UserError).message).toBe(
        `go build refused a module of ${root.dir}/src: checksum mismatch\n` +
          "verifying example.invalid/Org/signon@v1.0.0: checksum mismatch\n" +
          "\tdownloaded: h1:BpvtPctRvNpqrmHSNBEYnLmeX3XUJhWqnjr7AxpMqEA=\n" +
          "\tgo.sum:     h1:ML+1VpDiJXzk/4VyP8I/bqJA57iYg1OmnPds0G7bvwk=\n" +
          "SECURITY ERROR",
      );
      expect((error as UserError).hint).toBe(
        `the module DEVVM_GOPROXY=http://127.0.0.1:3000 served is not the one ${root.dir}/src/go.sum records: check that proxy (and DEVVM_GOPROXY); never edit go.sum to match what it served`,
      );
      const env = readFileSync(path.join(bin, "env"), "utf8");
      expect(env).toMatch(/^GOPROXY=http:\/\/127\.0\.0\.1:3000$/m);
      expect(env).toMatch(/^GOSUMDB=off$/m);
    });

    it("names go.sum as what to update when it lacks a module, with Go's default proxy", async () => {
      using root = makeTestRoot();
      const bin = fakeGo(root.dir, MISSING);
      const error = (await goBuild(root.ctx, { source: `${root.dir}/src`, output: "/x", scratch: root.dir }).catch(
        (e: unknown) => e,
      )) as UserError;
      expect(error.message).toContain("missing go.sum entry for module providing package example.invalid/Org/signon");
      expect(error.hint).toMatch(new RegExp(`^${root.dir}/src/go.sum lacks the module's hash`));
      // No setting: no GOPROXY at all, not the one root's shell had.
      expect(readFileSync(path.join(bin, "env"), "utf8")).not.toMatch(/^GOPROXY=/m);
    });

    it("leaves any other failure as go's own, with its command and output", async () => {
      using root = makeTestRoot();
      fakeGo(root.dir, "./main.go:3:2: undefined: x\n");
      await expect(goBuild(root.ctx, { source: `${root.dir}/src`, output: "/x", scratch: root.dir })).rejects.toThrow(
        /`go build -trimpath -buildvcs=false -o \/x \.` exited with 1:\n\.\/main\.go:3:2: undefined: x/,
      );
    });
  });
});

describe("the kept build cache (DEVVM_GO_CACHE)", () => {
  it("is go's GOCACHE when set; everything else stays in the scratch folder", () => {
    const env = goBuildEnvironment("/tmp/s", undefined, "/var/cache/devvm/go-build");
    expect(env).toMatchObject({
      GOCACHE: "/var/cache/devvm/go-build",
      GOMODCACHE: "/tmp/s/mod",
      GOPATH: "/tmp/s/gopath",
    });
  });

  it("is made root's and 0700 when absent", async () => {
    using root = makeTestRoot();
    const dir = path.join(root.dir, "cache/go-build");
    await ownBuildCache(dir);
    const made = lstatSync(dir);
    expect([made.isDirectory(), made.uid, (made.mode & 0o777).toString(8)]).toEqual([true, process.getuid!(), "700"]);
  });

  it.each([
    ["a link", (dir: string) => symlinkSync("/tmp", dir), /is a link/],
    ["a file", (dir: string) => writeFileSync(dir, ""), /is not a folder/],
    [
      "a folder others may write",
      (dir: string) => (mkdirSync(dir), chmodSync(dir, 0o777)),
      /writable by others \(mode 777\)/,
    ],
    ["a folder of another user", (dir: string) => (mkdirSync(dir), chownSync(dir, 65534, 65534)), /owned by uid 65534/],
  ])("is refused when it is %s, naming the setting", async (_what, make, why) => {
    using root = makeTestRoot();
    const dir = path.join(root.dir, "go-build");
    make(dir);
    const error = await ownBuildCache(dir).then(
      () => expect.fail("accepted"),
      (e: unknown) => e as UserError,
    );
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toMatch(why);
    expect(error.message).toMatch(/^DEVVM_GO_CACHE=/);
  });
});
