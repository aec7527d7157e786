// The apt mirror and snapshot archive stand-in on the host, no containers:
// a real apt, with a configuration of its own in a temporary folder (the
// host's /etc/apt and /var/lib/apt are neither read nor written), reads the
// mirror's newest state and an old state through the snapshot archive's
// 301, refuses an expired Release, a wrong key and a time before the first
// state, and downloads the old .deb with its exact dependency.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBE_PACKAGES, startAptArchiveStandIn, type AptArchiveStandIn } from "./apt-archive.ts";
import { runCommand } from "./run-command.ts";

const at = (version: string) => Object.fromEntries(PROBE_PACKAGES.map((name) => [name, version]));

describe("apt archive stand-in", () => {
  let apt: AptArchiveStandIn;
  let other: AptArchiveStandIn | undefined;
  let dir: string;
  let keyring: string;
  let wrongKeyring: string;
  let a: string;
  let b: string;
  /** A time between the two states, not a recorded one: the snapshot archive redirects it to `a`. */
  let between: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "apt-archive-test-"));
    [apt, other] = await Promise.all([startAptArchiveStandIn(), startAptArchiveStandIn()]);
    keyring = path.join(dir, "stand-in.gpg");
    wrongKeyring = path.join(dir, "other.gpg");
    await writeFile(keyring, apt.keyring);
    await writeFile(wrongKeyring, other.keyring);
    a = await apt.publish(at("1.0-1"));
    // Two seconds on, so a whole second lies between the states.
    await sleep(timeOf(a) + 2000 - Date.now());
    b = await apt.publish(at("2.0-1"));
    between = timestampOf(timeOf(a) + 1000);
  });
  afterAll(async () => {
    await Promise.all([apt?.stop(), other?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const get = async (url: string, method = "GET") => {
    const answer = await fetch(url, { method, redirect: "manual" });
    return { status: answer.status, location: answer.headers.get("location"), body: await answer.text() };
  };

  it("starts empty, builds the same .deb bytes on every start, and stamps each state a second apart", async () => {
    await using fresh = await startAptArchiveStandIn();
    expect((await get(`${fresh.mirrorUrl}/dists/noble-security/main/binary-amd64/Packages`)).body).toBe("");
    expect((await get(`${fresh.mirrorUrl}/dists/trixie/main/binary-amd64/Packages`)).body).toBe("");
    expect((await get(`${fresh.snapshotUrl}/debian/20300101T000000Z/dists/trixie/Release`)).status).toBe(404);
    const first = await fresh.publish({ "devvm-probe-one": "1.0-1" });
    const second = await fresh.publish({ "devvm-probe-one": "1.0-1" });
    expect(timeOf(second)).toBeGreaterThan(timeOf(first));
    const pool = "pool/main/d/devvm-probe-one/devvm-probe-one_1.0-1_all.deb";
    const made = Buffer.from(await (await fetch(`${fresh.mirrorUrl}/${pool}`)).arrayBuffer());
    expect(made.equals(Buffer.from(await (await fetch(`${apt.snapshotUrl}/debian/${a}/${pool}`)).arrayBuffer()))).toBe(
      true,
    );
    await expect(fresh.publish({ "devvm-probe-four": "1.0-1" })).rejects.toThrow(/not a probe package/);
    await expect(fresh.publish({ "devvm-probe-one": "../1" })).rejects.toThrow(/not a Debian version/);
  });

  it("dates the mirror's Release without expiry and the snapshot's to expire a second after its Date", async () => {
    const mirror = (await get(`${apt.mirrorUrl}/dists/trixie/Release`)).body;
    expect(mirror).toMatch(/^Origin: devvm-stand-in\nLabel: devvm-stand-in\nSuite: trixie\nCodename: trixie\n/);
    expect(mirror).toContain(`Date: ${new Date(timeOf(b)).toUTCString().replace("GMT", "UTC")}\n`);
    expect(mirror).not.toContain("Valid-Until");
    expect(mirror).toMatch(/^ [0-9a-f]{64} \d+ main\/binary-amd64\/Packages$/m);
    const emptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    expect(mirror).toContain(` ${emptySha256} 0 universe/binary-amd64/Packages\n`);
    const snapshot = (await get(`${apt.snapshotUrl}/debian/${a}/dists/trixie/Release`)).body;
    expect(snapshot).toContain(`Valid-Until: ${new Date(timeOf(a) + 1000).toUTCString().replace("GMT", "UTC")}\n`);
    const inRelease = (await get(`${apt.mirrorUrl}/dists/trixie/InRelease`)).body;
    expect(inRelease).toMatch(/^-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: devvm-stand-in\n/);
    expect((await get(`${apt.mirrorUrl}/dists/trixie/Release.gpg`)).body).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
  });

  it("offers only the newest versions on the mirror, with the old ones gone from its pool", async () => {
    const box = await aptBox(dir, "mirror", [
      `deb [signed-by=${keyring}] ${apt.mirrorUrl} trixie main universe`,
      `deb [signed-by=${keyring}] ${apt.mirrorUrl} trixie-updates main universe`,
    ]);
    const update = await box.run("apt-get", "update");
    expect(update.output).not.toMatch(/^[WE]:/m);
    expect(update.code).toBe(0);
    expect(await madison(box)).toEqual(PROBE_PACKAGES.map((name) => `${name} 2.0-1`).sort());
    const pool = "pool/main/d/devvm-probe-two";
    expect((await get(`${apt.mirrorUrl}/${pool}/devvm-probe-two_2.0-1_all.deb`)).status).toBe(200);
    expect((await get(`${apt.mirrorUrl}/${pool}/devvm-probe-two_1.0-1_all.deb`)).status).toBe(404);
  });

  it("serves an old state through the snapshot archive's 301, with the exact dependency in the old .deb", async () => {
    const box = await aptBox(dir, "snapshot", [
      `deb [signed-by=${keyring} check-valid-until=no] ${apt.snapshotUrl}/debian/${between} trixie main`,
      `deb [signed-by=${keyring} check-valid-until=no] ${apt.snapshotUrl}/debian-security/${between} trixie-security main`,
    ]);
    apt.clearRequests();
    const update = await box.run("apt-get", "update");
    expect(update.output).not.toMatch(/^[WE]:/m);
    expect(update.code).toBe(0);
    expect(apt.requests()).toContainEqual({
      method: "GET",
      path: `/archive/debian/${between}/dists/trixie/InRelease`,
      status: 301,
    });
    expect(apt.requests()).toContainEqual({
      method: "GET",
      path: `/archive/debian/${a}/dists/trixie/InRelease`,
      status: 200,
    });
    expect(apt.requests()).toContainEqual({
      method: "GET",
      path: `/archive/debian-security/${a}/dists/trixie-security/InRelease`,
      status: 200,
    });
    expect(await madison(box)).toEqual(PROBE_PACKAGES.map((name) => `${name} 1.0-1`).sort());

    const download = await box.run("apt-get", "download", "devvm-probe-one=1.0-1");
    expect(download.code, download.output).toBe(0);
    const deb = path.join(box.root, "devvm-probe-one_1.0-1_all.deb");
    expect((await runCommand("dpkg-deb", ["-f", deb, "Depends"])).stdout).toBe("devvm-probe-lib (= 1.0-1)\n");
    await runCommand("dpkg-deb", ["-x", deb, path.join(box.root, "unpacked")]);
    expect(await readFile(path.join(box.root, "unpacked/usr/share/devvm-probe/devvm-probe-one"), "utf8")).toBe(
      "devvm-probe-one 1.0-1\n",
    );
  });

  it("answers the snapshot's 301 to the same path under the state, and 404 before the first state", async () => {
    const redirected = await get(`${apt.snapshotUrl}/ubuntu/${between}/dists/noble/Release`, "HEAD");
    expect(redirected).toMatchObject({ status: 301, location: `${apt.snapshotUrl}/ubuntu/${a}/dists/noble/Release` });
    expect((await get(`${apt.snapshotUrl}/debian/29991231T235959Z/dists/trixie/Release`)).location).toBe(
      `${apt.snapshotUrl}/debian/${b}/dists/trixie/Release`,
    );
    expect((await get(`${apt.snapshotUrl}/debian/${timestampOf(timeOf(a) - 1000)}/dists/trixie/Release`)).status).toBe(
      404,
    );
    for (const missing of [`${apt.snapshotUrl}/debian/2026/dists/trixie/Release`, `${apt.url}/dists/trixie/Release`])
      expect((await get(missing)).status, missing).toBe(404);
    expect((await get(`${apt.mirrorUrl}/dists/trixie/Release`, "POST")).status).toBe(404);
  });

  it("has apt refuse the snapshot's expired Release without check-valid-until=no", async () => {
    const box = await aptBox(dir, "expired", [
      `deb [signed-by=${keyring}] ${apt.snapshotUrl}/debian/${between} trixie main`,
    ]);
    const update = await box.run("apt-get", "update");
    expect(update.output).toMatch(/Release file for \S+\/archive\/debian\/\S+\/dists\/trixie\/InRelease is expired/);
    expect(update.code).not.toBe(0);
  });

  it("has apt refuse a Release signed by a key other than the keyring's", async () => {
    const box = await aptBox(dir, "wrong-key", [`deb [signed-by=${wrongKeyring}] ${apt.mirrorUrl} trixie main`]);
    const update = await box.run("apt-get", "update");
    expect(update.output).toMatch(/NO_PUBKEY [0-9A-F]{16}/);
    expect(update.output).toMatch(/is not signed/);
    expect(update.code).not.toBe(0);
  });

  it("has apt fail on a time before the first state", async () => {
    const before = timestampOf(timeOf(a) - 86_400_000);
    const box = await aptBox(dir, "before", [
      `deb [signed-by=${keyring} check-valid-until=no] ${apt.snapshotUrl}/debian/${before} trixie main`,
    ]);
    apt.clearRequests();
    const update = await box.run("apt-get", "update");
    expect(update.output).toMatch(/404\s+Not Found/);
    expect(update.code).not.toBe(0);
    expect(apt.requests()).toContainEqual({
      method: "GET",
      path: `/archive/debian/${before}/dists/trixie/InRelease`,
      status: 404,
    });
  });

  it("logs each request's method, path and status until cleared", async () => {
    apt.clearRequests();
    await get(`${apt.mirrorUrl}/dists/bookworm-backports/main/binary-amd64/Packages`);
    await get(`${apt.snapshotUrl}/debian/${between}/dists/trixie/Release`, "HEAD");
    expect(apt.requests()).toEqual([
      { method: "GET", path: "/mirror/dists/bookworm-backports/main/binary-amd64/Packages", status: 200 },
      { method: "HEAD", path: `/archive/debian/${between}/dists/trixie/Release`, status: 301 },
    ]);
    apt.clearRequests();
    expect(apt.requests()).toEqual([]);
  });
});

interface AptBox {
  root: string;
  run(command: string, ...args: string[]): Promise<{ code: number | null; output: string }>;
}

/**
 * A private apt under `<dir>/<name>`: its own sources, lists, cache and an empty dpkg status; the host's
 * configuration is not read (its apt.conf.d may turn the expiry check off), and nothing is written outside.
 */
async function aptBox(dir: string, name: string, sources: string[]): Promise<AptBox> {
  const root = path.join(dir, name);
  for (const sub of ["lists/partial", "cache/archives/partial", "conf.d", "preferences.d", "trusted.gpg.d", "log"])
    await mkdir(path.join(root, sub), { recursive: true });
  await writeFile(path.join(root, "sources.list"), `${sources.join("\n")}\n`);
  await writeFile(path.join(root, "status"), "");
  const config = {
    "Dir::Etc::main": "/dev/null",
    "Dir::Etc::parts": `${root}/conf.d`,
    "Dir::Etc::sourcelist": `${root}/sources.list`,
    "Dir::Etc::sourceparts": "/nonexistent",
    "Dir::Etc::preferences": "/dev/null",
    "Dir::Etc::preferencesparts": `${root}/preferences.d`,
    "Dir::Etc::trusted": "/dev/null",
    "Dir::Etc::trustedparts": `${root}/trusted.gpg.d`,
    "Dir::State::lists": `${root}/lists`,
    "Dir::State::status": `${root}/status`,
    "Dir::Cache": `${root}/cache`,
    "Dir::Log": `${root}/log`,
    "Debug::NoLocking": "1",
    // As root apt downloads as _apt, who cannot enter the private temporary folder.
    "APT::Sandbox::User": "root",
    "APT::Architecture": "amd64",
    "Acquire::Languages": "none",
    "Acquire::http::Proxy::127.0.0.1": "DIRECT",
  };
  await writeFile(
    path.join(root, "apt.conf"),
    Object.entries(config)
      .map(([key, value]) => `${key} "${value}";\n`)
      .join(""),
  );
  const env = { PATH: process.env.PATH, LC_ALL: "C", APT_CONFIG: path.join(root, "apt.conf") };
  return {
    root,
    // Not run-command.ts: a failing apt is what some cases want, with its exit code and output.
    run: (command, ...args) =>
      new Promise((resolve) =>
        execFile(command, args, { cwd: root, env, timeout: 60_000 }, (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, output: stdout + stderr }),
        ),
      ),
  };
}

/** What `apt-cache madison` offers of the probes, as `name version` lines, sorted. */
async function madison(box: AptBox): Promise<string[]> {
  const { code, output } = await box.run("apt-cache", "madison", ...PROBE_PACKAGES);
  expect(code, output).toBe(0);
  return output
    .trim()
    .split("\n")
    .map((line) => line.split("|").map((field) => field.trim()))
    .map(([name, version]) => `${name} ${version}`)
    .sort();
}

function timeOf(timestamp: string): number {
  const [, y, mo, d, h, mi, s] = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(timestamp)!;
  return Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
}

function timestampOf(time: number): string {
  return new Date(time)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}
