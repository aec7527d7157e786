// bootstrap.sh on a bare Debian 12 box (the base image, the release archive
// unpacked, nothing else): its refusals, and Node fetched over HTTPS through
// this machine's TLS-inspecting proxy with DEVVM_EXTRA_CA_CERTS from the
// first request on. The full build through it is test/from-scratch.test.ts.
//
// The registry here is the host's own npm registry (asked of the host's npm
// at run time, never written down): the one HTTPS source the boxes reach.
import { readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { $ } from "zx";
import type { DevvmContainer } from "./container/devvm-container.ts";
import { RELEASE_DIR_IN_CONTAINER, startFreshVm } from "./build-in-vm.ts";

const HOST_CA_DIR = "/usr/local/share/ca-certificates";
const hostCaCerts = readdirSync(HOST_CA_DIR).filter((name) => name.endsWith(".crt"));

describe("bootstrap.sh on a bare Debian 12 box", () => {
  let vm: DevvmContainer;
  let registry: string;
  const bootstrap = (env: Record<string, string>, ...args: string[]) => vm.exec(["./bootstrap.sh", ...args], { workingDir: RELEASE_DIR_IN_CONTAINER, env });
  const installed = async (name: string) => (await vm.exec(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name])).stdout.trim() === "ii";

  beforeAll(async () => {
    registry = (await $({ quiet: true })`npm config get registry`).stdout.trim().replace(/\/+$/, "");
    vm = await startFreshVm("release");
    for (const name of hostCaCerts) await vm.copyFile(path.join(HOST_CA_DIR, name), `/root/extra-ca/${name}`);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("refuses to run as a user other than root, in one line, exit 5, installing nothing", async () => {
    const run = await vm.exec(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "./bootstrap.sh", "--list"], { workingDir: RELEASE_DIR_IN_CONTAINER });
    expect(run.exitCode).toBe(5);
    expect(run.stderr).toMatch(/^bootstrap: error: bootstrap.sh must run as root.*\nhint: .*sudo/);
    expect(await installed("curl")).toBe(false);
  });

  it("names pins.json when it has no apt pin for a fetch tool, exit 2", async () => {
    await vm.exec(`mkdir -p /root/bad && cd ${RELEASE_DIR_IN_CONTAINER} && cp roster.yaml packages.txt /root/bad/ && grep -v '"jq":' pins.json > /root/bad/pins.json`, { check: true });
    const run = await bootstrap({}, "--inputs", "/root/bad", "--list");
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr).toContain("/root/bad/pins.json: apt has no pin for jq");
    expect(await installed("curl")).toBe(false);
  });

  it("reports an unreachable Debian mirror as such, exit 1", async () => {
    await vm.exec("cp -a /etc/apt/sources.list /root/sources.list.saved && echo 'deb http://127.0.0.1:9/debian bookworm main' > /etc/apt/sources.list", { check: true });
    try {
      const run = await bootstrap({ DEVVM_NPM_REGISTRY: registry }, "--list");
      expect(run.exitCode, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/^bootstrap: error: apt-get update failed: the Debian mirror is out of reach\nhint: check the network and the mirror/m);
    } finally {
      await vm.exec("cp -a /root/sources.list.saved /etc/apt/sources.list", { check: true });
    }
  });

  // Only where HTTPS is inspected (this machine: its CA certificates are in HOST_CA_DIR).
  it.runIf(hostCaCerts.length > 0)("without DEVVM_EXTRA_CA_CERTS, names it when the proxy's certificate is not trusted", async () => {
    expect(registry).toMatch(/^https:/);
    const run = await bootstrap({ DEVVM_NPM_REGISTRY: registry }, "--list");
    expect(run.exitCode, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/the server's TLS certificate is not trusted .*\nhint: .*set DEVVM_EXTRA_CA_CERTS/);
    // The fetch tools were installed at their pins; no half-downloaded file stays.
    expect(await installed("curl")).toBe(true);
    expect((await vm.exec(`find ${RELEASE_DIR_IN_CONTAINER}/output -name '*.part-*'`)).stdout).toBe("");
  });

  it("with DEVVM_EXTRA_CA_CERTS, fetches the pinned Node over HTTPS, verifies it and runs the builder with it", async () => {
    const run = await bootstrap({ DEVVM_NPM_REGISTRY: registry, DEVVM_EXTRA_CA_CERTS: "/root/extra-ca" }, "--list");
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^preflight\s+Refuses/m);
    expect(run.stdout).toMatch(/^workspaces\s/m);
    // The archive sits in the download cache under the sha512 its pin names, for the node stage.
    const pins = JSON.parse(await vm.readFile(`${RELEASE_DIR_IN_CONTAINER}/pins.json`)) as { node: { integrity: string } };
    const hex = Buffer.from(pins.node.integrity.replace(/^sha512-/, ""), "base64").toString("hex");
    const cached = `${RELEASE_DIR_IN_CONTAINER}/output/cache/sha512/${hex}`;
    expect((await vm.exec(["sha512sum", cached], { check: true })).stdout.split(" ")[0]).toBe(hex);
    // Nothing is installed into the system but the fetch tools: no node on PATH.
    expect((await vm.exec("command -v node npm")).stdout).toBe("");
  });

  it("refuses a cached Node archive that does not match its pin, runs nothing of it and drops it", async () => {
    const cacheDir = `${RELEASE_DIR_IN_CONTAINER}/output/cache/sha512`;
    await vm.exec(`printf x >> ${cacheDir}/* && rm -rf ${RELEASE_DIR_IN_CONTAINER}/output/bootstrap`, { check: true });
    const run = await bootstrap({ DEVVM_NPM_REGISTRY: registry, DEVVM_EXTRA_CA_CERTS: "/root/extra-ca" }, "--list");
    expect(run.exitCode, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/does not match its pin: expected sha512 [0-9a-f]{128}, received [0-9a-f]{128}/);
    expect(run.stdout).toBe("");
    expect((await vm.exec(`ls -A ${cacheDir} ${RELEASE_DIR_IN_CONTAINER}/output`)).stdout).not.toMatch(/^bootstrap$|[0-9a-f]{128}/m);
  });
});
