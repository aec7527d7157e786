import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import type { Inputs } from "../inputs/index.ts";
import { BIN_DIR, nodeBinary, npmCli } from "../machine/layout.ts";
import { Background } from "../core/background.ts";
import {
  activeInstall,
  checkGlobalCli,
  cliPrefix,
  installGlobalCli,
  installedVersion,
  prepareGlobalCli,
  verifyIntegrity,
  type GlobalCli,
  type InstallOptions,
  type NpmPin,
} from "./npm-global.ts";
import { progressIntervals } from "../core/progress.ts";
import { makeTestRoot, type TestRoot } from "../../test/support/test-context.ts";

const NODE = "22.23.3";
const CLAUDE: GlobalCli = {
  name: "@anthropic-ai/claude-code",
  bins: ["claude"],
  allowScripts: ["@anthropic-ai/claude-code"],
};
const CODEX: GlobalCli = { name: "@openai/codex", bins: ["codex"] };
const INTEGRITY = `sha512-${"A".repeat(86)}==`;
const OTHER_INTEGRITY = `sha512-${"B".repeat(86)}==`;

/** A CLI stage's check, then its install with the plan check made, as the runner does. */
async function checkThenInstall(ctx: BuildContext, cli: GlobalCli, pin: NpmPin, options?: InstallOptions) {
  const { plan } = await checkGlobalCli(ctx, cli, pin);
  return installGlobalCli(ctx, cli, pin, plan, options);
}

function testRoot(settings: Partial<BuildContext["settings"]> = {}): TestRoot {
  const root = makeTestRoot({ inputs: { pins: { node: { version: NODE } } } as unknown as Inputs });
  Object.assign(root.ctx.settings, settings);
  return root;
}

function write(root: TestRoot, machinePath: string, content: string, mode = 0o644): void {
  const real = path.join(root.dir, machinePath);
  mkdirSync(path.dirname(real), { recursive: true });
  writeFileSync(real, content, { mode });
}

function link(root: TestRoot, machinePath: string, target: string): void {
  const real = path.join(root.dir, machinePath);
  mkdirSync(path.dirname(real), { recursive: true });
  symlinkSync(target, real);
}

/** What `npm install -g --prefix P` leaves: the package and a relative bin link. */
function fakeInstall(
  root: TestRoot,
  name: string,
  version: string,
  bin: string,
  prefix = cliPrefix(name, version),
): void {
  write(
    root,
    `${prefix}/lib/node_modules/${name}/package.json`,
    JSON.stringify({ name, version, bin: { [bin]: "cli.js" } }),
  );
  write(root, `${prefix}/lib/node_modules/${name}/cli.js`, `#!/bin/sh\necho ${version}\n`, 0o755);
  link(root, `${prefix}/bin/${bin}`, `../lib/node_modules/${name}/cli.js`);
}

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

describe("checkGlobalCli", () => {
  it("reports nothing when the pinned version is active, and manages the links", async () => {
    using root = testRoot();
    fakeInstall(root, CODEX.name, "0.169.0", "codex");
    link(root, `${BIN_DIR}/codex`, `${cliPrefix(CODEX.name, "0.169.0")}/bin/codex`);
    expect(await checkGlobalCli(root.ctx, CODEX, { version: "0.169.0" })).toEqual({
      changes: [],
      managed: [{ path: "/usr/local/bin/codex" }],
      plan: { before: { version: "0.169.0", prefix: cliPrefix(CODEX.name, "0.169.0") }, changes: [] },
    });
    expect(cliPrefix(CODEX.name, "0.169.0")).toBe("/opt/devvm/npm/@openai+codex/0.169.0");
  });

  it("reports a package change when another version is active", async () => {
    using root = testRoot();
    fakeInstall(root, CODEX.name, "0.168.0", "codex");
    link(root, `${BIN_DIR}/codex`, `${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect((await checkGlobalCli(root.ctx, CODEX, { version: "0.169.0" })).changes).toEqual([
      { kind: "package", name: CODEX.name, from: "0.168.0", to: "0.169.0" },
    ]);
  });
});

// ---- a fake registry and a fake npm, for the install itself ----------------

interface FakeRegistry {
  url: string;
  requests: string[];
  integrity: string;
  close(): Promise<void>;
}

async function startFakeRegistry(integrity: string): Promise<FakeRegistry> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? "");
    const match = /^\/(.+)\/([^/]+)$/.exec(req.url ?? "");
    if (!match) return void res.writeHead(404).end();
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ name: decodeURIComponent(match[1]!), version: match[2], dist: { integrity } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    integrity,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// Logs its argv, installs a package with one
// bin into --prefix; FAKE_NPM_FAIL=1 makes it fail halfway; FAKE_NPM_SLEEP_MS makes it slow;
// FAKE_NPM_NICE_LOG gets its nice value.
const FAKE_NPM = String.raw`
const fs = require("node:fs"), path = require("node:path");
const args = process.argv.slice(2);
if (process.env.FAKE_NPM_NICE_LOG) fs.appendFileSync(process.env.FAKE_NPM_NICE_LOG, require("node:os").getPriority() + "\n");
if (process.env.FAKE_NPM_SLEEP_MS) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.env.FAKE_NPM_SLEEP_MS));
fs.appendFileSync(process.env.FAKE_NPM_LOG, JSON.stringify(args) + "\n");
const prefix = args[args.indexOf("--prefix") + 1];
const spec = args.find((a) => /^[@a-z].*@\d/.test(a));
const at = spec.lastIndexOf("@"), name = spec.slice(0, at), version = spec.slice(at + 1);
const bin = name === "@anthropic-ai/claude-code" ? "claude" : path.basename(name);
const dir = path.join(prefix, "lib/node_modules", name);
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version, bin: { [bin]: "cli.js" } }));
if (process.env.FAKE_NPM_FAIL === "1") { console.error("npm error code E500"); process.exit(1); }
fs.writeFileSync(path.join(dir, "cli.js"), "#!/bin/sh\necho " + version + "\n", { mode: 0o755 });
fs.mkdirSync(path.join(prefix, "bin"), { recursive: true });
fs.symlinkSync(path.join("../lib/node_modules", name, "cli.js"), path.join(prefix, "bin", bin));
`;

describe("installGlobalCli", () => {
  let root: TestRoot;
  let registry: FakeRegistry;
  const npmCalls = () =>
    existsSync(path.join(root.dir, "npm.log"))
      ? readFileSync(path.join(root.dir, "npm.log"), "utf8")
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as string[])
      : [];
  const installs = () => npmCalls().filter((args) => args[0] === "install");
  const activeTarget = (bin: string) => readlinkSync(path.join(root.dir, BIN_DIR, bin));
  const versionsOf = (name: string) => readdirSync(path.join(root.dir, path.dirname(cliPrefix(name, "x")))).sort();

  beforeEach(async () => {
    registry = await startFakeRegistry(INTEGRITY);
    root = testRoot();
    // The pinned Node tree: the test's own node, and the fake npm as its npm.
    mkdirSync(path.dirname(path.join(root.dir, nodeBinary(NODE))), { recursive: true });
    symlinkSync(process.execPath, path.join(root.dir, nodeBinary(NODE)));
    write(root, npmCli(NODE), FAKE_NPM);
    vi.stubEnv("FAKE_NPM_LOG", path.join(root.dir, "npm.log"));
    // npm's own configuration, as the npm that runs the builder reads it.
    vi.stubEnv("npm_config_registry", registry.url);
  });
  afterEach(async () => {
    vi.unstubAllEnvs();
    root[Symbol.dispose]();
    await registry.close();
  });

  it("installs into the version's prefix with only the allowed scripts, then links the bins", async () => {
    const changes = await checkThenInstall(root.ctx, CLAUDE, { version: "2.1.332", integrity: INTEGRITY });
    expect(changes).toEqual([{ kind: "package", name: CLAUDE.name, from: null, to: "2.1.332" }]);
    expect(activeTarget("claude")).toBe("/opt/devvm/npm/@anthropic-ai+claude-code/2.1.332/bin/claude");
    expect(await installedVersion(root.ctx, CLAUDE.name, "claude")).toBe("2.1.332");
    const [install] = installs();
    expect(install).toContain("--allow-scripts=@anthropic-ai/claude-code");
    expect(install).toContain("--strict-allow-scripts");
    expect(install).toContain("@anthropic-ai/claude-code@2.1.332");
    // Without DEVVM_NPM_REGISTRY, npm's own configuration decides, and the pin is checked there.
    expect(install).not.toContain("--registry");
    expect(registry.requests).toEqual(["/@anthropic-ai%2fclaude-code/2.1.332"]);
    expect(versionsOf(CLAUDE.name)).toEqual(["2.1.332"]);
  });

  it("passes the configured registry to npm", async () => {
    root.ctx.settings.npmRegistry = registry.url;
    await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY });
    const [install] = installs();
    expect(install!.slice(install!.indexOf("--registry"), install!.indexOf("--registry") + 2)).toEqual([
      "--registry",
      registry.url,
    ]);
    expect(install!.some((a) => a.startsWith("--allow-scripts"))).toBe(false);
  });

  it("does nothing, and runs no npm and asks no registry, when the pinned version is active", async () => {
    await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY });
    const calls = npmCalls().length;
    const requests = registry.requests.length;
    expect(await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY })).toEqual([]);
    expect(npmCalls().length).toBe(calls);
    expect(registry.requests.length).toBe(requests);
  });

  it("installs nothing when the registry's integrity differs from the pin, and names both", async () => {
    const error = await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: OTHER_INTEGRITY }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toContain(OTHER_INTEGRITY);
    expect((error as Error).message).toContain(INTEGRITY);
    expect(installs()).toEqual([]);
    expect(existsSync(path.join(root.dir, BIN_DIR, "codex"))).toBe(false);
  });

  it("says how long npm has run while it runs, and how long it took", async () => {
    const saved = progressIntervals.heartbeatMs;
    progressIntervals.heartbeatMs = 100;
    vi.stubEnv("FAKE_NPM_SLEEP_MS", "450");
    const lines: string[] = [];
    Object.assign(root.ctx.log, { info: (m: string) => lines.push(m) });
    try {
      await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY });
    } finally {
      progressIntervals.heartbeatMs = saved;
    }
    expect(lines[0]).toBe("npm install @openai/codex@0.169.0");
    expect(lines.slice(1, -1).length).toBeGreaterThanOrEqual(2);
    for (const line of lines.slice(1, -1)) expect(line).toMatch(/^npm install @openai\/codex@0\.169\.0: \d+\.\d s$/);
    expect(lines.at(-1)).toMatch(/^npm install @openai\/codex@0\.169\.0: done in \d+\.\d s$/);
  });

  it("keeps the old version active when npm fails, and leaves no half install", async () => {
    await checkThenInstall(root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    vi.stubEnv("FAKE_NPM_FAIL", "1");
    await expect(checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY })).rejects.toThrow(
      /exited with 1:\nnpm error code E500/,
    );
    expect(activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect(versionsOf(CODEX.name)).toEqual(["0.168.0"]);
  });

  it("keeps the old version active and removes the new one when verification fails", async () => {
    await checkThenInstall(root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    const verify = vi.fn(async (prefix: string) => {
      expect(existsSync(path.join(prefix, "bin/codex"))).toBe(true);
      throw new UserError("unhealthy");
    });
    await expect(
      checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify }),
    ).rejects.toThrow("unhealthy");
    expect(verify).toHaveBeenCalledWith(path.join(root.dir, cliPrefix(CODEX.name, "0.169.0")));
    expect(activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect(versionsOf(CODEX.name)).toEqual(["0.168.0"]);
  });

  it("runs beforeSwitch after verify, only when the version changes; throwing keeps the old version active and the verified install", async () => {
    await checkThenInstall(root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    const calls: string[] = [];
    const verify = vi.fn(async () => void calls.push(`verify, active ${activeTarget("codex")}`));
    let fail = true;
    const beforeSwitch = vi.fn(async () => {
      calls.push(`beforeSwitch, active ${activeTarget("codex")}`);
      if (fail) throw new UserError("no backup");
    });
    await expect(
      checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify, beforeSwitch }),
    ).rejects.toThrow("no backup");
    const old = `${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`;
    expect(calls).toEqual([`verify, active ${old}`, `beforeSwitch, active ${old}`]);
    expect(activeTarget("codex")).toBe(old);
    expect(versionsOf(CODEX.name)).toEqual(["0.168.0", "0.169.0"]);

    // The next try reuses the install (no npm), verifies it again, and switches.
    const installsBefore = installs().length;
    fail = false;
    await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify, beforeSwitch });
    expect(installs().length).toBe(installsBefore);
    expect(verify).toHaveBeenCalledTimes(2);
    expect(activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.169.0")}/bin/codex`);
    // Nothing changes version: not called.
    await checkThenInstall(root.ctx, CODEX, { version: "0.169.0", integrity: INTEGRITY }, { verify, beforeSwitch });
    expect(beforeSwitch).toHaveBeenCalledTimes(2);
  });

  it("keeps the previous version for a rollback, prunes older ones, and rolls back without npm", async () => {
    for (const version of ["0.167.0", "0.168.0", "0.169.0"])
      await checkThenInstall(root.ctx, CODEX, { version, integrity: INTEGRITY });
    expect(versionsOf(CODEX.name)).toEqual(["0.168.0", "0.169.0"]);
    const calls = installs().length;
    const changes = await checkThenInstall(root.ctx, CODEX, { version: "0.168.0", integrity: INTEGRITY });
    expect(changes).toEqual([{ kind: "package", name: CODEX.name, from: "0.169.0", to: "0.168.0" }]);
    expect(installs().length).toBe(calls);
    expect(activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.168.0")}/bin/codex`);
    expect(versionsOf(CODEX.name)).toEqual(["0.168.0", "0.169.0"]);
  });

  it("refuses a package whose commands differ from the stage's, switching nothing", async () => {
    const error = await checkThenInstall(
      root.ctx,
      { name: "@openai/codex", bins: ["codex", "codex-exec"] },
      { version: "0.169.0", integrity: INTEGRITY },
    ).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/provides the commands \[codex\], the stage links \[codex, codex-exec\]/);
    expect(existsSync(path.join(root.dir, BIN_DIR, "codex"))).toBe(false);
    expect(versionsOf(CODEX.name)).toEqual([]);
  });

  it("installs nothing without a pinned integrity", async () => {
    await expect(checkThenInstall(root.ctx, CODEX, { version: "0.169.0" })).rejects.toThrow(
      "pins.json has no integrity for @openai/codex@0.169.0",
    );
    expect(installs()).toEqual([]);
  });

  it("says which stage to run first when the pinned Node is missing", async () => {
    (root.ctx.inputs.pins.node as { version: string }).version = "22.99.0";
    await expect(checkThenInstall(root.ctx, CODEX, { version: "0.169.0" })).rejects.toThrow(
      /pinned Node 22\.99\.0 is not installed/,
    );
  });

  describe("prepared in the background (while apt runs)", () => {
    const pin = { version: "0.169.0", integrity: INTEGRITY };
    const withNode = (work: (tree: string) => Promise<unknown>) =>
      work(path.join(root.dir, `/opt/devvm/node/${NODE}`)) as never;

    it("stages the install at nice 19 with nothing live; the stage's apply takes it, runs no second npm, and says it done", async () => {
      const background = new Background();
      const lines: string[] = [];
      const ctx = { ...root.ctx, background, log: { info: (m: string) => lines.push(m), debug: () => {} } };
      vi.stubEnv("FAKE_NPM_NICE_LOG", path.join(root.dir, "nice.log"));
      await prepareGlobalCli(ctx, CODEX, pin, withNode)!.prepared();
      expect(existsSync(path.join(root.dir, BIN_DIR, "codex"))).toBe(false);
      expect(versionsOf(CODEX.name)).toEqual([`.staging-0.169.0-${process.pid}`]);
      expect(readFileSync(path.join(root.dir, "nice.log"), "utf8").trim()).toBe("19");
      expect(lines).toEqual(["npm install @openai/codex@0.169.0"]);

      expect(await checkThenInstall(ctx, CODEX, pin)).toEqual([
        { kind: "package", name: CODEX.name, from: null, to: "0.169.0" },
      ]);
      expect(installs()).toHaveLength(1);
      expect(activeTarget("codex")).toBe(`${cliPrefix(CODEX.name, "0.169.0")}/bin/codex`);
      expect(versionsOf(CODEX.name)).toEqual(["0.169.0"]);
      expect(lines.slice(1)).toEqual([
        expect.stringMatching(/^npm install @openai\/codex@0\.169\.0: done in \d+\.\d s$/),
      ]);
      await background.settle(ctx.log);
      expect(versionsOf(CODEX.name)).toEqual(["0.169.0"]);
    });

    it("removes a staged install that no apply took (its stage did not run) when the build ends", async () => {
      const background = new Background();
      await prepareGlobalCli({ ...root.ctx, background }, CODEX, pin, withNode)!.prepared();
      await background.settle(root.ctx.log);
      expect(versionsOf(CODEX.name)).toEqual([]);
      expect(existsSync(path.join(root.dir, BIN_DIR, "codex"))).toBe(false);
    });

    it("prepares nothing when the pinned version is active", async () => {
      await checkThenInstall(root.ctx, CODEX, pin);
      const background = new Background();
      await prepareGlobalCli({ ...root.ctx, background }, CODEX, pin, withNode)!.prepared();
      expect(installs()).toHaveLength(1);
    });

    it("leaves a failure to the stage's apply, which tries again and reports its own error, installing nothing", async () => {
      const background = new Background();
      const ctx = { ...root.ctx, background };
      const tampered = { ...pin, integrity: OTHER_INTEGRITY };
      await prepareGlobalCli(ctx, CODEX, tampered, withNode)!.prepared();
      await expect(checkThenInstall(ctx, CODEX, tampered)).rejects.toThrow(
        `pins.json has integrity ${OTHER_INTEGRITY}, the registry serves ${INTEGRITY}`,
      );
      // Asked once in the background, once by the apply.
      expect(registry.requests).toEqual(["/@openai%2fcodex/0.169.0", "/@openai%2fcodex/0.169.0"]);
      expect(installs()).toEqual([]);
      expect(existsSync(path.join(root.dir, BIN_DIR, "codex"))).toBe(false);
    });
  });
});

describe("verifyIntegrity", () => {
  it("passes when the registry serves the pinned integrity, asking for the exact version", async () => {
    const registry = await startFakeRegistry(INTEGRITY);
    using root = testRoot({ npmRegistry: registry.url });
    try {
      await verifyIntegrity(root.ctx, "t3", { version: "0.0.26", integrity: INTEGRITY });
      expect(registry.requests).toEqual(["/t3/0.0.26"]);
    } finally {
      await registry.close();
    }
  });

  it("names the status when the registry has no such version", async () => {
    const server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    using root = testRoot({ npmRegistry: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
    try {
      await expect(verifyIntegrity(root.ctx, "t3", { version: "0.0.26", integrity: INTEGRITY })).rejects.toThrow(
        /t3@0\.0\.26 is not in the registry/,
      );
    } finally {
      server.close();
    }
  });
});
