import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { UserError } from "../lib/core/errors.ts";
import type { Inputs } from "../lib/inputs/index.ts";
import { releaseByKey } from "../lib/machine/releases.ts";
import { makeTestRoot, type TestRoot } from "../test/support/test-context.ts";
import stage, { installedVersions } from "./apt.ts";

describe("apt", () => {
  it("reads installed versions from dpkg's database and leaves out what is not installed", async () => {
    using root = makeTestRoot();
    const versions = await installedVersions(root.ctx, ["dpkg", "devvm-no-such-package"]);
    expect(versions.get("dpkg")).toBe(
      execFileSync("dpkg-query", ["-W", "-f=${Version}", "dpkg"], { encoding: "utf8" }),
    );
    expect(versions.has("devvm-no-such-package")).toBe(false);
  });

  it("never installs under --root, and says so", async () => {
    using root = makeTestRoot();
    expect(await stage.check(root.ctx)).toEqual({ skip: expect.stringContaining("not under --root") });
  });
});

// ---- apply, against a fake apt-get, apt-cache and dpkg-query on PATH ---------

const GIT = "1:2.39.5-0+deb12u2";
const MIRROR_DOWN = `W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Could not resolve 'deb.debian.org'
W: Some index files failed to download. They have been ignored, or old ones used instead.
`;

// Each behaves as its file in the fake's folder says; apt-get logs its arguments.
const FAKES: Record<string, string> = {
  "apt-get": `#!/bin/bash
echo "$*" >> "$FAKE_APT/apt-get.log"
# The snapshot's scratch sources.list.d, as apt-get update saw it.
[[ "$1" == -o && "$2" == Dir::Etc::SourceParts=* ]] && { [ "$3" = update ] && cp -r "\${2#*=}" "$FAKE_APT/source-parts"; shift 2; snapshot=snapshot-; }
case "$1" in
  update)
    [ -e "$FAKE_APT/\${snapshot}update.code" ] || snapshot=
    cat "$FAKE_APT/\${snapshot}update.stderr" >&2 2>/dev/null; exit "$(cat "$FAKE_APT/\${snapshot}update.code")";;
  install)
    printf '0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\\nNeed to get 7260 kB of archives.\\n'
    if [[ "$*" == *"APT::Status-Fd=3"* ]]; then
      printf 'dlstatus:1:0.0000:Retrieving file 1 of 1\\npmstatus:git:20.0000:Unpacking git (amd64)\\npmstatus:git:60.0000:Configuring git (amd64)\\n' >&3
    fi
    touch "$FAKE_APT/installed";;
esac
`,
  "apt-cache": `#!/bin/bash
case "$*" in
  *SourceParts=*madison*) cat "$FAKE_APT/madison-snapshot";;
  *SourceParts=*show*) cat "$FAKE_APT/show";;
  *) cat "$FAKE_APT/madison";;
esac
`,
  dpkg: `#!/bin/bash
echo "$*" >> "$FAKE_APT/dpkg.log"
[ "$1" = --audit ] && [ -s "$FAKE_APT/audit" ] && cat "$FAKE_APT/audit" && exit 1
[ "$1" = --configure ] && [ ! -e "$FAKE_APT/configure-fails" ] && rm -f "$FAKE_APT/audit"
exit 0
`,
  "dpkg-query": `#!/bin/bash
[ -e "$FAKE_APT/installed" ] && printf 'git\\t${GIT}\\tinstalled\\n' && exit 0
exit 1
`,
};

describe("apt apply", () => {
  let root: TestRoot;
  const fake = (file: string) => path.join(root.dir, "fake-apt", file);
  const aptGetCalls = () =>
    existsSync(fake("apt-get.log")) ? readFileSync(fake("apt-get.log"), "utf8").trim().split("\n") : [];
  const apply = (lines: string[] = []) => {
    Object.assign(root.ctx.log, { info: (m: string) => lines.push(m) });
    return stage.apply(root.ctx, { changes: [{ kind: "package", name: "git", from: null, to: GIT }], managed: [] });
  };
  const failureOf = (lines?: string[]) =>
    apply(lines).then(
      () => expect.fail("apply succeeded"),
      (e: unknown) => e as UserError,
    );
  const mirror = (update: { code: number; stderr?: string }, madison: string) => {
    writeFileSync(fake("update.code"), String(update.code));
    writeFileSync(fake("update.stderr"), update.stderr ?? "");
    writeFileSync(fake("madison"), madison);
  };

  function setUp(): void {
    root = makeTestRoot({
      inputs: {
        packages: [{ name: "git", line: 1 }],
        pins: { apt: { "debian-13": { git: GIT } } },
      } as unknown as Inputs,
    });
    mkdirSync(fake(""));
    for (const [name, script] of Object.entries(FAKES)) {
      writeFileSync(fake(name), script);
      chmodSync(fake(name), 0o755);
    }
    vi.stubEnv("PATH", `${fake("")}:${process.env.PATH}`);
    vi.stubEnv("FAKE_APT", fake(""));
  }
  afterEach(() => {
    vi.unstubAllEnvs();
    root[Symbol.dispose]();
  });

  it("has work, a repair, when dpkg --audit finds a package left half-way though every pin is installed", async () => {
    setUp();
    Object.assign(root.ctx, { root: "/" });
    writeFileSync(fake("installed"), "");
    expect(await stage.check(root.ctx)).toEqual({ changes: [], managed: [] });
    writeFileSync(
      fake("audit"),
      "The following packages are only half configured, probably due to problems\nconfiguring them the first time.\n libfoo1\n",
    );
    const check = await stage.check(root.ctx);
    expect(check).toEqual({
      changes: [{ kind: "action", description: "repair the interrupted dpkg (dpkg --configure -a)" }],
      managed: [],
    });
    const lines: string[] = [];
    Object.assign(root.ctx.log, { info: (m: string) => lines.push(m) });
    // As the runner does: apply gets what check found.
    await stage.apply(root.ctx, check as Exclude<typeof check, { skip: string }>);
    expect(lines[0]).toMatch(
      /^dpkg --audit finds packages left half-way \(The following packages are only half configured.*\): repairing it with dpkg --configure -a$/,
    );
    expect(readFileSync(fake("dpkg.log"), "utf8")).toContain("--configure -a");
  });

  it("only warns when dpkg --audit's trouble outlives the repair but every pin is installed", async () => {
    setUp();
    Object.assign(root.ctx, { root: "/" });
    writeFileSync(fake("installed"), "");
    // A package whose configuration fails every time: the fake dpkg leaves the audit as it is.
    writeFileSync(
      fake("audit"),
      "The following packages are only half configured, probably due to problems\nconfiguring them the first time.\n thirdparty-tool\n",
    );
    writeFileSync(fake("configure-fails"), "");
    const check = await stage.check(root.ctx);
    const lines: string[] = [];
    Object.assign(root.ctx.log, { info: (m: string) => lines.push(m) });
    expect(await stage.apply(root.ctx, check as Exclude<typeof check, { skip: string }>)).toEqual([]);
    expect(lines.at(-1)).toMatch(
      /^warning: dpkg is still not consistent after dpkg --configure -a and apt-get -f install:\n[\s\S]* thirdparty-tool\nhint: /,
    );
  });

  it("reports a failed apt-get update as such (exit 100), with the network hint, and installs nothing", async () => {
    setUp();
    mirror(
      {
        code: 100,
        stderr: `E: The repository 'http://deb.debian.org/debian bookworm Release' no longer has a Release file.\n`,
      },
      "",
    );
    const error = await failureOf();
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toBe(
      "apt-get update failed:\nE: The repository 'http://deb.debian.org/debian bookworm Release' no longer has a Release file.",
    );
    expect(error.hint).toMatch(/check the network, and the mirror in \/etc\/apt\/sources\.list/);
    expect(aptGetCalls()).toEqual(["update -q"]);
  });

  it("reports an apt-get update that exits 0 but could not fetch, rather than blaming the pins", async () => {
    setUp();
    mirror({ code: 0, stderr: MIRROR_DOWN }, "");
    const error = await failureOf();
    expect(error.message).toBe(`apt-get update failed:\n${MIRROR_DOWN.trimEnd()}`);
    expect(error.message).not.toMatch(/offers no version/);
    expect(error.hint).not.toMatch(/build\.ts lock/);
    expect(aptGetCalls()).toEqual(["update -q"]);
  });

  it("blames the pins when the mirror answered but no longer offers the pinned version", async () => {
    setUp();
    mirror(
      { code: 0 },
      "       git | 1:2.39.5-0+deb12u3 | http://deb.debian.org/debian bookworm/main amd64 Packages\n",
    );
    await expect(apply()).rejects.toThrow(`git: pinned ${GIT}, the mirror offers 1:2.39.5-0+deb12u3`);
  });

  it("installs with a warning when the update could not fetch but the lists still offer every pin", async () => {
    setUp();
    mirror(
      { code: 0, stderr: MIRROR_DOWN },
      `       git | ${GIT} | http://deb.debian.org/debian bookworm/main amd64 Packages\n`,
    );
    const lines: string[] = [];
    await apply(lines);
    expect(lines).toContain(`warning: apt-get update: ${MIRROR_DOWN.trimEnd()}`);
  });

  it("shows apt-get update's time and apt's progress from its status fd", async () => {
    setUp();
    mirror({ code: 0 }, `       git | ${GIT} | http://deb.debian.org/debian bookworm/main amd64 Packages\n`);
    const lines: string[] = [];
    expect(await apply(lines)).toEqual([{ kind: "package", name: "git", from: null, to: GIT }]);
    expect(aptGetCalls()[1]).toMatch(/^install .*-o APT::Status-Fd=3 git=1:2\.39\.5-0\+deb12u2$/);
    expect(lines).toEqual([
      "1 package(s) of packages.txt to install: apt-get update first",
      "apt-get update",
      expect.stringMatching(/^apt-get update: done in \d+\.\d s$/),
      "apt-get install",
      "apt: downloading 1 of 1 packages (0% of 7260 kB)",
      "apt: unpacking 1 of 1 packages (git)",
      "apt: setting up 1 of 1 packages (git)",
      expect.stringMatching(/^apt-get install: done in \d+\.\d s$/),
    ]);
  });

  describe("a pin the mirror no longer offers", () => {
    const NEWER = "1:2.39.5-0+deb12u3";
    const MIRROR = `       git | ${NEWER} | http://deb.debian.org/debian trixie/main amd64 Packages\n`;
    const SNAPSHOT = `       git | ${NEWER} | http://deb.debian.org/debian trixie/main amd64 Packages\n       git | ${GIT} | http://snapshot.debian.org/archive/debian/20261101T000000Z trixie/main amd64 Packages\n`;
    const withSnapshotTime = () =>
      Object.assign(root.ctx.inputs.pins, { aptSnapshot: { "debian-13": "20261101T000000Z" } });
    const scratchLeft = () => readdirSync(tmpdir()).filter((n) => n.startsWith(`devvm-apt-snapshot-${process.pid}-`));

    it("comes from the snapshot archive at the lock's time, through a source for this run only, with the exact dependencies it needs", async () => {
      setUp();
      withSnapshotTime();
      mirror({ code: 0 }, MIRROR);
      writeFileSync(fake("madison-snapshot"), SNAPSHOT);
      writeFileSync(
        fake("show"),
        `Package: git\nVersion: ${GIT}\nDepends: libc6 (>= 2.34), git-man (= ${GIT}),\n liberror-perl | perl:any (= 5.36.0-7)\n\nPackage: git\nVersion: ${NEWER}\nDepends: git-man (= ${NEWER})\n`,
      );
      const lines: string[] = [];
      const changes = await apply(lines);
      const via = "the snapshot archive at 20261101T000000Z";
      expect(changes).toEqual([
        { kind: "package", name: "git", from: null, to: GIT, via },
        { kind: "package", name: "git-man", from: null, to: GIT, via: `${via}, as git ${GIT} needs it` },
      ]);
      expect(lines).toContain(
        `1 pinned version(s) the mirror no longer offers (git ${GIT}): from the snapshot archive at 20261101T000000Z (http://snapshot.debian.org/archive)`,
      );
      const calls = aptGetCalls();
      expect(calls).toHaveLength(3);
      expect(calls[0]).toBe("update -q");
      expect(calls[1]).toMatch(/^-o Dir::Etc::SourceParts=\/\S+\/devvm-apt-snapshot-\d+-\w+ update -q$/);
      expect(calls[2]).toMatch(
        /^-o Dir::Etc::SourceParts=\S+ install .* git=1:2\.39\.5-0\+deb12u2 git-man=1:2\.39\.5-0\+deb12u2$/,
      );
      // Debian's snapshot archive, both archives, checked by Debian's keys; its expired Release files accepted.
      expect(readFileSync(fake("source-parts/zz-devvm-snapshot.sources"), "utf8")).toContain(
        [
          "Types: deb",
          "URIs: http://snapshot.debian.org/archive/debian/20261101T000000Z/",
          "Suites: trixie trixie-updates",
          "Components: main",
          "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
          "Check-Valid-Until: no",
          "",
          "Types: deb",
          "URIs: http://snapshot.debian.org/archive/debian-security/20261101T000000Z/",
          "Suites: trixie-security",
        ].join("\n"),
      );
      // Never in /etc/apt, and gone after the run.
      expect(existsSync(path.join(root.dir, "etc/apt/sources.list.d"))).toBe(false);
      expect(scratchLeft()).toEqual([]);
    });

    it("comes from the archive and keyring the settings name (a stand-in's), by the same path", async () => {
      setUp();
      withSnapshotTime();
      Object.assign(root.ctx.settings, {
        aptSnapshotUrl: "http://127.0.0.1:9/archive",
        aptSnapshotKeyring: "/etc/devvm-test/stand-in.gpg",
      });
      mirror({ code: 0 }, MIRROR);
      writeFileSync(fake("madison-snapshot"), SNAPSHOT);
      writeFileSync(fake("show"), `Package: git\nVersion: ${GIT}\n`);
      await apply();
      const sources = readFileSync(fake("source-parts/zz-devvm-snapshot.sources"), "utf8");
      expect(sources).toContain("URIs: http://127.0.0.1:9/archive/debian/20261101T000000Z/\n");
      expect(sources).toContain("Signed-By: /etc/devvm-test/stand-in.gpg\n");
    });

    it("stops before installing anything when the snapshot lacks it too, naming the pin, the mirror's version and the time", async () => {
      setUp();
      withSnapshotTime();
      mirror({ code: 0 }, MIRROR);
      writeFileSync(fake("madison-snapshot"), MIRROR);
      const error = await failureOf();
      expect(error).toBeInstanceOf(UserError);
      expect(error.message).toBe(
        "1 pinned version(s) are offered neither by the mirror nor by the snapshot archive at 20261101T000000Z (http://snapshot.debian.org/archive):\n" +
          `git: pinned ${GIT}, the mirror offers ${NEWER}; the snapshot at 20261101T000000Z does not have it either`,
      );
      expect(error.hint).toMatch(/lock/);
      expect(aptGetCalls().filter((c) => / install /.test(` ${c}`))).toEqual([]);
      expect(scratchLeft()).toEqual([]);
    });

    it("names the pins and the snapshot when apt cannot read the snapshot (exit 100), installing nothing", async () => {
      setUp();
      withSnapshotTime();
      mirror({ code: 0 }, MIRROR);
      writeFileSync(fake("madison-snapshot"), MIRROR);
      writeFileSync(fake("snapshot-update.code"), "100");
      writeFileSync(
        fake("snapshot-update.stderr"),
        "E: The repository 'http://snapshot.debian.org/archive/debian/20261101T000000Z trixie Release' does not have a Release file.\n",
      );
      const error = await failureOf();
      expect(error.message).toBe(
        `git: pinned ${GIT}, the mirror offers ${NEWER}\nand the snapshot archive at 20261101T000000Z (http://snapshot.debian.org/archive) could not be read:\n` +
          "E: The repository 'http://snapshot.debian.org/archive/debian/20261101T000000Z trixie Release' does not have a Release file.",
      );
      expect(error.hint).toMatch(/^check the network and DEVVM_APT_SNAPSHOT_URL/);
      expect(aptGetCalls().filter((c) => / install /.test(` ${c}`))).toEqual([]);
      expect(scratchLeft()).toEqual([]);
    });

    it("stops, saying so, when pins.json records no snapshot time for the release", async () => {
      setUp();
      mirror({ code: 0 }, MIRROR);
      const error = await failureOf();
      expect(error.message).toBe(
        `git: pinned ${GIT}, the mirror offers ${NEWER}\npins.json records no snapshot time for Debian 13 (trixie) (aptSnapshot.debian-13), so they cannot come from the snapshot archive`,
      );
      expect(aptGetCalls()).toEqual(["update -q"]);
    });
  });

  it("refuses a release pins.json has no apt pins for, naming it and how to record them", async () => {
    setUp();
    Object.assign(root.ctx, { release: releaseByKey("ubuntu-24.04") });
    const error = await failureOf();
    expect(error.message).toBe(
      "pins.json has no apt pins for Ubuntu 24.04 LTS (noble) (apt.ubuntu-24.04): this machine's release",
    );
    expect(error.hint).toMatch(
      /build\.ts lock.* on a Ubuntu 24\.04 LTS \(noble\) machine, or `npm run lock:release -- ubuntu-24\.04`/,
    );
    expect(aptGetCalls()).toEqual([]);
  });

  it("on Debian 12, adds bookworm-backports for Go only, from the machine's own archive, before apt-get update", async () => {
    setUp();
    Object.assign(root.ctx, {
      release: releaseByKey("debian-12"),
      inputs: { ...root.ctx.inputs, pins: { apt: { "debian-12": { git: GIT } } } },
    });
    mkdirSync(path.join(root.dir, "etc/apt/sources.list.d"), { recursive: true });
    mkdirSync(path.join(root.dir, "etc/apt/preferences.d"), { recursive: true });
    writeFileSync(
      path.join(root.dir, "etc/apt/sources.list.d/debian.sources"),
      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
    );
    mirror({ code: 0 }, `       git | ${GIT} | http://mirror.example/debian bookworm/main amd64 Packages\n`);
    const changes = await apply();
    expect(changes).toEqual(
      expect.arrayContaining([
        { kind: "package", name: "git", from: null, to: GIT },
        expect.objectContaining({ kind: "create", path: "/etc/apt/sources.list.d/devvm-bookworm-backports.sources" }),
        expect.objectContaining({ kind: "create", path: "/etc/apt/preferences.d/devvm-bookworm-backports" }),
      ]),
    );
    expect(readFileSync(path.join(root.dir, "etc/apt/sources.list.d/devvm-bookworm-backports.sources"), "utf8")).toBe(
      "# Written by the devvm builder (apt stage): t3-dispatch needs Go 1.22 or newer; bookworm's own golang-go is 1.19.\n" +
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\n" +
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    );
    const preference = readFileSync(path.join(root.dir, "etc/apt/preferences.d/devvm-bookworm-backports"), "utf8");
    expect(preference).toMatch(
      /^Package: \/\^golang-\(go\|src\|doc\|any\|.*\$\/\nPin: release n=bookworm-backports\nPin-Priority: 500\n$/m,
    );
    expect(aptGetCalls()[0]).toBe("update -q");
  });

  it("says which file lacks the release's archive when no apt source serves it", async () => {
    setUp();
    Object.assign(root.ctx, {
      release: releaseByKey("debian-12"),
      inputs: { ...root.ctx.inputs, pins: { apt: { "debian-12": { git: GIT } } } },
    });
    const error = await failureOf();
    expect(error.message).toBe(
      "no apt source in /etc/apt/sources.list or /etc/apt/sources.list.d/ serves bookworm, so bookworm-backports has no archive to come from",
    );
    expect(aptGetCalls()).toEqual([]);
  });
});
