import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { BIN_DIR } from "../machine/layout.ts";
import { activeInstall, cliPrefix, installedVersion } from "./npm-active.ts";
import { checkGlobalCli } from "./npm-global.ts";
import { CLAUDE, fakeInstall, link, testRoot, write } from "../../test/support/fixtures/npm-cli.ts";

describe("installedVersion", () => {
  it("follows the /usr/local/bin link to its prefix and reads the package.json there, ignoring a claude earlier on PATH", async () => {
    using root = testRoot();
    fakeInstall(root, CLAUDE.name, "2.1.332", "claude");
    link(root, `${BIN_DIR}/claude`, `${cliPrefix(CLAUDE.name, "2.1.332")}/bin/claude`);
    // docs/devvm.md stage 4: the admin's personal claude once shadowed the system install.
    write(root, "/home/wizard/.local/bin/claude", "#!/bin/sh\necho '9.9.9 (Claude Code)'\n", 0o755);
    vi.stubEnv("PATH", `${path.join(root.dir, "home/wizard/.local/bin")}:${process.env.PATH}`);
    try {
      expect(await installedVersion(root.ctx, CLAUDE.name, "claude")).toBe("2.1.332");
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it("is null without the link, whatever PATH finds", async () => {
    using root = testRoot();
    write(root, "/home/wizard/.local/bin/claude", "#!/bin/sh\necho '9.9.9 (Claude Code)'\n", 0o755);
    vi.stubEnv("PATH", `${path.join(root.dir, "home/wizard/.local/bin")}:${process.env.PATH}`);
    try {
      expect(await installedVersion(root.ctx, CLAUDE.name, "claude")).toBeNull();
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it("recognizes an install the builder did not make (an old npm -g into /usr/local) as not its own", async () => {
    using root = testRoot();
    write(
      root,
      `/usr/local/lib/node_modules/${CLAUDE.name}/package.json`,
      JSON.stringify({ name: CLAUDE.name, version: "2.1.300" }),
    );
    link(root, `${BIN_DIR}/claude`, `../lib/node_modules/${CLAUDE.name}/bin/claude.exe`);
    expect(await activeInstall(root.ctx, CLAUDE.name, "claude")).toEqual({ version: "2.1.300", prefix: null });
    const { changes } = await checkGlobalCli(root.ctx, CLAUDE, { version: "2.1.300" });
    expect(changes).toEqual([
      { kind: "package", name: CLAUDE.name, from: "2.1.300 (not the builder's install)", to: "2.1.300" },
    ]);
  });

  it("is null for a link into a prefix whose package.json is missing (a broken install is reinstalled)", async () => {
    using root = testRoot();
    link(root, `${BIN_DIR}/claude`, `${cliPrefix(CLAUDE.name, "2.1.332")}/bin/claude`);
    expect(await installedVersion(root.ctx, CLAUDE.name, "claude")).toBeNull();
  });
});
