// bootstrap.sh on a bare box of the test release (the base image, the release archive
// unpacked, nothing else): its refusals, and Node fetched over HTTPS through
// this machine's TLS-inspecting proxy with DEVVM_EXTRA_CA_CERTS from the
// first request on. The full build through it is test/from-scratch.test.ts.
//
// The registry here is the host's own npm registry (asked of the host's npm
// at run time, never written down): the one HTTPS source the boxes reach.
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import { readdirSync } from "node:fs";
import type { Pins } from "../lib/inputs/pins.ts";
import { startArtifactStandIn } from "./support/stand-ins/artifacts.ts";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { $ } from "zx";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { closedPort } from "./support/test-context.ts";
import { CLONE_DIR_IN_CONTAINER, RELEASE_DIR_IN_CONTAINER, startFreshVm } from "./support/harness/build-in-vm.ts";

const HOST_CA_DIR = "/usr/local/share/ca-certificates";
const hostCaCerts = readdirSync(HOST_CA_DIR).filter((name) => name.endsWith(".crt"));

/**
 * For the enclosing describe: a bare VM (the release archive unpacked, or a
 * clone's files) with this machine's extra CA certificates at
 * /root/extra-ca, and the host's npm registry; `bootstrap` runs
 * ./bootstrap.sh in the project's folder there.
 */
function bareVm(from: "release" | "clone") {
  const dir = from === "release" ? RELEASE_DIR_IN_CONTAINER : CLONE_DIR_IN_CONTAINER;
  const box = {
    vm: undefined as unknown as DevvmContainer,
    registry: "",
    bootstrap: (env: Record<string, string>, ...args: string[]) =>
      box.vm.exec(["./bootstrap.sh", ...args], { workingDir: dir, env }),
  };
  beforeAll(async () => {
    box.registry = (await $({ quiet: true })`npm config get registry`).stdout.trim().replace(/\/+$/, "");
    box.vm = await startFreshVm(from);
    for (const name of hostCaCerts) await box.vm.copyFile(path.join(HOST_CA_DIR, name), `/root/extra-ca/${name}`);
  });
  afterAll(async () => {
    await box.vm?.[Symbol.asyncDispose]();
  });
  return box;
}

describe("bootstrap.sh on a bare box of the test release", () => {
  const box = bareVm("release");
  const { bootstrap } = box;
  const installed = async (name: string) =>
    (await box.vm.exec(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name])).stdout.trim() === "ii";

  it("refuses to run as a user other than root, in one line, exit 5, installing nothing", async () => {
    const run = await box.vm.exec(
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "./bootstrap.sh", "--list"],
      { workingDir: RELEASE_DIR_IN_CONTAINER },
    );
    expect(run.exitCode).toBe(5);
    expect(run.stderr).toMatch(/^bootstrap: error: bootstrap.sh must run as root.*\nhint: .*sudo/);
    expect(await installed("curl")).toBe(false);
  });

  it("names pins.json when it has no apt pin for a fetch tool, exit 2", async () => {
    await box.vm.exec(
      `mkdir -p /root/bad && cd ${RELEASE_DIR_IN_CONTAINER} && cp roster.yaml packages.txt /root/bad/ && grep -v '"jq":' pins.json > /root/bad/pins.json`,
      { check: true },
    );
    const run = await bootstrap({}, "--inputs", "/root/bad", "--list");
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr).toContain("/root/bad/pins.json: apt has no pin for jq");
    expect(await installed("curl")).toBe(false);
  });

  it("names pins.json, the machine's release and the way to lock it when pins.json has no apt pins for that release, exit 2", async () => {
    await box.vm.exec(
      `mkdir -p /root/norelease && cd ${RELEASE_DIR_IN_CONTAINER} && cp roster.yaml packages.txt /root/norelease/ && sed 's/^    "${TEST_RELEASE}": {/    "debian-99": {/' pins.json > /root/norelease/pins.json`,
      { check: true },
    );
    const run = await bootstrap({}, "--inputs", "/root/norelease", "--list");
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr).toContain(
      `bootstrap: error: /root/norelease/pins.json has no apt pins for this machine's release (${TEST_RELEASE}; from /etc/os-release); it has: `,
    );
    expect(run.stderr).toContain(`npm run lock:release -- ${TEST_RELEASE}`);
    expect(await installed("curl")).toBe(false);
  });

  it("reports an unreachable Debian mirror as such, exit 1", async () => {
    // Every source of the box moved aside (a one-line sources.list or deb822 files), one unreachable in their place.
    await box.vm.exec(
      "mkdir -p /root/apt-saved && cp -a /etc/apt/sources.list.d /root/apt-saved/ && { [ ! -e /etc/apt/sources.list ] || cp -a /etc/apt/sources.list /root/apt-saved/; } && rm -f /etc/apt/sources.list.d/*.sources && echo 'deb [trusted=yes] http://127.0.0.1:9/debian stable main' > /etc/apt/sources.list",
      { check: true },
    );
    try {
      const run = await bootstrap({ DEVVM_NPM_REGISTRY: box.registry }, "--list");
      expect(run.exitCode, run.stderr).toBe(1);
      expect(run.stderr).toMatch(
        /^bootstrap: error: apt-get update failed: the Debian mirror is out of reach\nhint: check the network and the mirror/m,
      );
    } finally {
      await box.vm.exec(
        "rm -rf /etc/apt/sources.list /etc/apt/sources.list.d && cp -a /root/apt-saved/. /etc/apt/ && rm -rf /root/apt-saved",
        { check: true },
      );
    }
  });

  // Only where HTTPS is inspected (this machine: its CA certificates are in HOST_CA_DIR).
  it.runIf(hostCaCerts.length > 0)(
    "without DEVVM_EXTRA_CA_CERTS, names it when the proxy's certificate is not trusted",
    async () => {
      expect(box.registry).toMatch(/^https:/);
      const run = await bootstrap({ DEVVM_NPM_REGISTRY: box.registry }, "--list");
      expect(run.exitCode, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/the server's TLS certificate is not trusted .*\nhint: .*set DEVVM_EXTRA_CA_CERTS/);
      // The fetch tools were installed at their pins; no half-downloaded file stays.
      expect(await installed("curl")).toBe(true);
      expect((await box.vm.exec(`find ${RELEASE_DIR_IN_CONTAINER}/output -name '*.part-*'`)).stdout).toBe("");
    },
  );

  it("with DEVVM_EXTRA_CA_CERTS, fetches the pinned Node over HTTPS, verifies it and runs the builder with it", async () => {
    const run = await bootstrap({ DEVVM_NPM_REGISTRY: box.registry, DEVVM_EXTRA_CA_CERTS: "/root/extra-ca" }, "--list");
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^preflight\s+Refuses/m);
    expect(run.stdout).toMatch(/^workspaces\s/m);
    // The archive sits in the download cache under the sha512 its pin names, for the node stage.
    const pins = JSON.parse(await box.vm.readFile(`${RELEASE_DIR_IN_CONTAINER}/pins.json`)) as {
      node: { integrity: string };
    };
    const hex = Buffer.from(pins.node.integrity.replace(/^sha512-/, ""), "base64").toString("hex");
    const cached = `${RELEASE_DIR_IN_CONTAINER}/output/cache/sha512/${hex}`;
    expect((await box.vm.exec(["sha512sum", cached], { check: true })).stdout.split(" ")[0]).toBe(hex);
    // Nothing is installed into the system but the fetch tools: no node on PATH.
    expect((await box.vm.exec("command -v node npm")).stdout).toBe("");
  });

  it("refuses a cached Node archive that does not match its pin, runs nothing of it and drops it", async () => {
    const cacheDir = `${RELEASE_DIR_IN_CONTAINER}/output/cache/sha512`;
    await box.vm.exec(`printf x >> ${cacheDir}/* && rm -rf ${RELEASE_DIR_IN_CONTAINER}/output/bootstrap`, {
      check: true,
    });
    const run = await bootstrap({ DEVVM_NPM_REGISTRY: box.registry, DEVVM_EXTRA_CA_CERTS: "/root/extra-ca" }, "--list");
    expect(run.exitCode, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/does not match its pin: expected sha512 [0-9a-f]{128}, received [0-9a-f]{128}/);
    expect(run.stdout).toBe("");
    expect((await box.vm.exec(`ls -A ${cacheDir} ${RELEASE_DIR_IN_CONTAINER}/output`)).stdout).not.toMatch(
      /^bootstrap$|[0-9a-f]{128}/m,
    );
  });

  describe("with a fetch tool's pin that the mirror no longer offers (Debian replaces versions with each update)", () => {
    const STALE = "7.0.0-1+stale";
    beforeAll(async () => {
      await box.vm.exec(
        `mkdir -p /root/stale && cd ${RELEASE_DIR_IN_CONTAINER} && cp roster.yaml packages.txt /root/stale/ && sed 's/^      "curl": ".*"/      "curl": "${STALE}"/' pins.json > /root/stale/pins.json && grep -q '"curl": "${STALE}"' /root/stale/pins.json`,
        { check: true },
      );
    });

    it("a build installs the mirror's version to fetch Node, and its apt stage asks the snapshot for the pin, naming it when it cannot", async () => {
      // The snapshot's time as the lock recorded it; the snapshot archive here a server that has none (404).
      const pins = JSON.parse(await box.vm.readFile("/root/stale/pins.json")) as Pins;
      const time = pins.aptSnapshot?.[TEST_RELEASE as keyof Pins["apt"]];
      expect(time).toMatch(/^\d{8}T\d{6}Z$/);
      await using empty = await startArtifactStandIn({});
      const snapshotUrl = empty.url;
      const run = await bootstrap(
        {
          DEVVM_NPM_REGISTRY: box.registry,
          DEVVM_EXTRA_CA_CERTS: "/root/extra-ca",
          DEVVM_APT_SNAPSHOT_URL: snapshotUrl,
        },
        "--inputs",
        "/root/stale",
        "--stage",
        "apt",
      );
      expect(run.stderr).toContain(
        `bootstrap: curl: the mirror no longer offers the pinned ${STALE}; its current version fetches Node, and the apt stage installs ${STALE} from the snapshot archive`,
      );
      expect(await installed("curl")).toBe(true);
      // The builder ran (bootstrap.sh fetched Node with that curl) and its apt stage stopped before installing anything.
      const output = run.stdout + run.stderr;
      expect(run.exitCode, output).not.toBe(0);
      expect(output).toMatch(
        new RegExp(
          `curl: pinned 7\\.0\\.0-1\\+stale, the mirror offers [^\\n]+\\n\\s*and the snapshot archive at ${time} \\(${snapshotUrl.replace(/\./g, "\\.")}\\) could not be read:\\n`,
        ),
      );
      expect(output).toMatch(/hint: check the network and DEVVM_APT_SNAPSHOT_URL/);
      expect(await installed("tree")).toBe(false);
    });

    it("./bootstrap.sh lock installs the mirror's version instead and runs the lock, which resolves curl", async () => {
      const before = (await box.vm.exec(["sha256sum", "/root/stale/pins.json"], { check: true })).stdout;
      const closed = `http://127.0.0.1:${await closedPort()}`;
      const run = await bootstrap(
        {
          DEVVM_NPM_REGISTRY: box.registry,
          DEVVM_EXTRA_CA_CERTS: "/root/extra-ca",
          DEVVM_RELEASES_URL: closed,
          DEVVM_KUBERNETES_RELEASES_URL: closed,
        },
        "--inputs",
        "/root/stale",
        "lock",
      );
      expect(run.stderr).toContain(
        `bootstrap: curl: the mirror no longer offers the pinned ${STALE}; the lock installs its current version and records it`,
      );
      expect(await installed("curl")).toBe(true);
      // The lock ran. The release downloads are out of reach (and the registry may lack t3 0.0.26), so it writes nothing and exits 1, but apt resolved.
      expect(run.exitCode, run.stderr).toBe(1);
      expect(run.stderr).toMatch(
        /^error: pins\.json was not changed: \d+ entries could not be resolved\n {2}kubectl: /m,
      );
      expect(run.stderr).not.toMatch(/^ {2}apt/m);
      expect((await box.vm.exec(["sha256sum", "/root/stale/pins.json"], { check: true })).stdout).toBe(before);
    });
  });
});

describe("bootstrap.sh in a clone (no bundle, no node_modules)", () => {
  const box = bareVm("clone");
  const { bootstrap } = box;

  it("makes the bundle with the pinned npm from package-lock.json once, and runs the builder with it", async () => {
    const env = {
      DEVVM_NPM_REGISTRY: box.registry,
      ...(hostCaCerts.length > 0 ? { DEVVM_EXTRA_CA_CERTS: "/root/extra-ca" } : {}),
    };
    const first = await bootstrap(env, "--list");
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stderr).toContain(
      `bootstrap: no bundle in ${CLONE_DIR_IN_CONTAINER} (a clone): making it with npm ci and npm run bundle`,
    );
    expect(first.stdout).toMatch(/^preflight\s+Refuses/m);
    const pins = JSON.parse(await box.vm.readFile(`${CLONE_DIR_IN_CONTAINER}/pins.json`)) as {
      node: { npm: { version: string } };
    };
    expect(
      (
        await box.vm.exec(`cat ${CLONE_DIR_IN_CONTAINER}/output/bootstrap/node-*/lib/node_modules/npm/package.json`, {
          check: true,
        })
      ).stdout,
    ).toContain(`"version": "${pins.node.npm.version}"`);
    // Nothing is installed into the system but the fetch tools.
    expect((await box.vm.exec("command -v node npm")).stdout).toBe("");
    const again = await bootstrap(env, "--list");
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).not.toContain("no bundle");
    expect(again.stdout).toBe(first.stdout);
  });
});
