// Pins stay obtainable (docs/cli.md "Pins stay obtainable"), proven on a
// bare box of the test release whose apt sources are its release's archive
// and a mirror stand-in holding small probe packages, the snapshot archive
// a stand-in too (test/support/stand-ins/apt-archive.ts: the real one's
// layout and redirects, signed with a test key the settings name):
//   1. `./bootstrap.sh lock --apt-only` pins what the mirror offers and
//      records the time it asked; nothing reaches the snapshot;
//   2. the mirror moves on (newer probes, the older ones gone from it);
//   3. a pin in neither the mirror nor the snapshot stops the build before
//      anything is installed, naming the pin, the mirror's version and the
//      time;
//   4. the README's command builds the box from scratch: the two stale pins
//      (and the exact dependency of one) come from the snapshot at the
//      lock's time, not from the snapshot's newest state, and the report
//      names them; dpkg-query shows exactly the pins;
//   5. a second build changes nothing and asks nothing of anyone.
// Checked from outside: dpkg's database, files, the stand-ins' request logs.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePackages } from "../lib/inputs/packages.ts";
import { snapshotDate, snapshotTimeOf, type Pins } from "../lib/inputs/pins.ts";
import { releaseByKey } from "../lib/machine/releases.ts";
import type { Change } from "../lib/core/change.ts";
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import {
  bootstrapIn,
  nonIdempotentStages,
  RELEASE_DIR_IN_CONTAINER,
  startFreshVm,
  type BuildRun,
} from "./support/harness/build-in-vm.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { startAptArchiveStandIn, type AptArchiveStandIn } from "./support/stand-ins/apt-archive.ts";
import { startStandInSources, writePins, type StandInSources } from "./support/stand-ins/sources.ts";

const RELEASE = releaseByKey(TEST_RELEASE)!;
const KEYRING = "/etc/devvm-test/apt-stand-in.gpg";
const DIR = RELEASE_DIR_IN_CONTAINER;
const ABSENT_INPUTS = "/root/absent-pin";
const OLD = "1.0-1";
const NEW = "2.0-1";
// One admin: the build is the whole pipeline, with less of the per-user work this test is not about.
const ROSTER = "users:\n  wizard:\n    authentik_user: merlin\n    k8s_user: wizard-admin\n    tier: admin\n";

describe("pins the mirror no longer offers, from the snapshot archive at the lock's time", () => {
  let sources: StandInSources;
  let apt: AptArchiveStandIn;
  let vm: DevvmContainer;
  let lockedAt: string;
  let locked: Pins;
  let stateA: string;
  let stateB: string;
  let build: BuildRun;
  const env = () => ({
    ...sources.env,
    DEVVM_APT_SNAPSHOT_URL: apt.snapshotUrl,
    DEVVM_APT_SNAPSHOT_KEYRING: KEYRING,
  });
  const snapshotRequests = () => apt.requests().filter((r) => r.path.startsWith("/archive/"));
  const installed = async (names: string[]) => {
    const query = await vm.exec(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}${Version}\\n", ...names]);
    return Object.fromEntries(
      query.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" "))
        .filter(([, status]) => status === "ii")
        .map(([name, , version]) => [name, version]),
    );
  };

  beforeAll(async () => {
    [sources, apt] = await Promise.all([startStandInSources(), startAptArchiveStandIn()]);
    stateA = await apt.publish({
      "devvm-probe-lib": OLD,
      "devvm-probe-one": OLD,
      "devvm-probe-two": OLD,
      "devvm-probe-three": OLD,
    });
    vm = await startFreshVm("release");
    // The box's mirror: its release's own archive, and the stand-in's probes beside it.
    await vm.exec(`mkdir -p ${KEYRING.replace(/\/[^/]+$/, "")}`, { check: true });
    await vm.exec(`echo ${apt.keyring.toString("base64")} | base64 -d > ${KEYRING}`, { check: true });
    await vm.exec(
      `printf 'Types: deb\\nURIs: ${apt.mirrorUrl}\\nSuites: ${RELEASE.codename}\\nComponents: main\\nSigned-By: ${KEYRING}\\n' > /etc/apt/sources.list.d/devvm-test-mirror.sources`,
      { check: true },
    );
    // packages.txt with two probes; their pins are the lock's to write.
    await vm.exec(`printf 'devvm-probe-one\\ndevvm-probe-two\\n' >> ${DIR}/packages.txt`, { check: true });
    await vm.exec(`printf '%s' '${ROSTER}' > ${DIR}/roster.yaml`, { check: true });
    // The other releases' blocks pin the probes too (their own locks would): loadInputs checks every block.
    const pins = structuredClone(sources.pins);
    for (const [key, block] of Object.entries(pins.apt))
      if (key !== TEST_RELEASE) Object.assign(block ?? {}, { "devvm-probe-one": OLD, "devvm-probe-two": OLD });
    await writePins(vm, `${DIR}/pins.json`, pins);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await Promise.all([sources?.[Symbol.asyncDispose](), apt?.[Symbol.asyncDispose]()]);
  });

  it("lock pins what the mirror offers and records when it asked; the snapshot is not asked", async () => {
    const before = snapshotTimeOf(new Date());
    const lock = await vm.exec(["./bootstrap.sh", "lock", "--apt-only"], { workingDir: DIR, env: env() });
    const after = snapshotTimeOf(new Date());
    expect(lock.exitCode, lock.stderr).toBe(0);
    locked = JSON.parse(await vm.readFile(`${DIR}/pins.json`)) as Pins;
    const block = locked.apt[TEST_RELEASE as keyof Pins["apt"]]!;
    expect([block["devvm-probe-one"], block["devvm-probe-two"]]).toEqual([OLD, OLD]);
    lockedAt = locked.aptSnapshot?.[TEST_RELEASE as keyof Pins["apt"]] ?? "";
    expect(lockedAt >= before && lockedAt <= after, `${before} <= ${lockedAt} <= ${after}`).toBe(true);
    expect(snapshotRequests()).toEqual([]);
  });

  it("a pin in neither the mirror nor the snapshot stops the build before anything is installed, naming it", async () => {
    expect(lockedAt).not.toBe("");
    // The mirror moves on a second after the lock: the snapshot's newest state is then newer than the lock's time.
    const wait = snapshotDate(lockedAt)!.getTime() + 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    stateB = await apt.publish({
      "devvm-probe-lib": NEW,
      "devvm-probe-one": NEW,
      "devvm-probe-two": NEW,
      "devvm-probe-three": NEW,
    });
    expect(stateB > lockedAt && stateA <= lockedAt).toBe(true);
    const pins = structuredClone(locked);
    for (const [key, block] of Object.entries(pins.apt))
      Object.assign(block ?? {}, { "devvm-probe-three": key === TEST_RELEASE ? "0.9-1" : OLD });
    await vm.exec(
      `mkdir -p ${ABSENT_INPUTS} && cp ${DIR}/roster.yaml ${ABSENT_INPUTS}/ && { cat ${DIR}/packages.txt; echo devvm-probe-three; } > ${ABSENT_INPUTS}/packages.txt`,
      { check: true },
    );
    await writePins(vm, `${ABSENT_INPUTS}/pins.json`, pins);
    const names = parsePackages(await vm.readFile(`${ABSENT_INPUTS}/packages.txt`)).packages.map((p) => p.name);
    const before = await installed(names);
    const run = await bootstrapIn(vm, env(), "--inputs", ABSENT_INPUTS, "--stage", "apt");
    expect(run.exitCode, run.log).not.toBe(0);
    expect(run.log).toContain(
      `devvm-probe-three: pinned 0.9-1, the mirror offers ${NEW}; the snapshot at ${lockedAt} does not have it either`,
    );
    // Neither the probes the snapshot has, nor anything else of packages.txt, was installed.
    expect(await installed(names)).toEqual(before);
    expect(before).not.toHaveProperty("tree");
    expect(await installed(["devvm-probe-lib", "devvm-probe-one", "devvm-probe-two"])).toEqual({});
    // The snapshot's source was for that run only: not in /etc/apt, no scratch folder left.
    expect((await vm.exec("grep -rl snapshot /etc/apt; ls -d /tmp/devvm-apt-snapshot-* 2>/dev/null")).stdout).toBe("");
  });

  it("a from-scratch build by the README's command takes the stale pins from the snapshot at the lock's time", async () => {
    apt.clearRequests();
    build = await bootstrapIn(vm, env());
    process.stderr.write(
      `the build's apt stage:\n${build.log.match(/^ *apt\b[\s\S]*?(?=^ *extra-ca-certs\b)/m)?.[0] ?? build.log}`,
    );
    expect(build.exitCode, build.log).toBe(0);
    const names = parsePackages(await vm.readFile(`${DIR}/packages.txt`)).packages.map((p) => p.name);
    const block = locked.apt[TEST_RELEASE as keyof Pins["apt"]]!;
    expect(await installed(names)).toEqual(Object.fromEntries(names.map((n) => [n, block[n]])));
    // devvm-probe-one 1.0-1 needs devvm-probe-lib (= 1.0-1): from the snapshot too, though the mirror has 2.0-1.
    expect(await installed(["devvm-probe-lib"])).toEqual({ "devvm-probe-lib": OLD });
    expect(await vm.readFile("/usr/share/devvm-probe/devvm-probe-one")).toBe(`devvm-probe-one ${OLD}\n`);
    // The lock's time led to the state it saw (a redirect to it), and the packages came from there.
    const served = snapshotRequests().map((r) => `${r.status} ${r.path}`);
    expect(served).toContainEqual(expect.stringMatching(new RegExp(`^301 /archive/debian/${lockedAt}/dists/`)));
    expect(served).toContainEqual(
      expect.stringMatching(new RegExp(`^200 /archive/debian/${stateA}/pool/.*/devvm-probe-one_1\\.0-1_all\\.deb$`)),
    );
    // Not the snapshot's newest state: the mirror's own, with the probes at 2.0-1.
    expect(served.filter((s) => s.includes(`/${stateB}/`))).toEqual([]);
    // Never in /etc/apt; nothing of the run's source left.
    expect((await vm.exec("grep -rl snapshot /etc/apt; ls -d /tmp/devvm-apt-snapshot-* 2>/dev/null")).stdout).toBe("");
  });

  it("the report names the two pins taken from the snapshot, and the dependency one of them needed", () => {
    const stage = build.report.stages.find((s) => s.name === "apt");
    const changes = (stage && "changes" in stage ? stage.changes : []) as Change[];
    const via = changes.flatMap((c) => (c.kind === "package" && c.via ? [`${c.name} ${c.to}: ${c.via}`] : []));
    expect(via.sort()).toEqual([
      `devvm-probe-lib ${OLD}: the snapshot archive at ${lockedAt}, as devvm-probe-one ${OLD} needs it`,
      `devvm-probe-one ${OLD}: the snapshot archive at ${lockedAt}`,
      `devvm-probe-two ${OLD}: the snapshot archive at ${lockedAt}`,
    ]);
    expect(build.log).toContain(`install devvm-probe-one ${OLD} (from the snapshot archive at ${lockedAt})`);
  });

  it("a second build changes nothing and asks nothing of the mirror, the snapshot or any other source", async () => {
    apt.clearRequests();
    sources.clearRequests();
    const second = await bootstrapIn(vm, env());
    expect(second.exitCode, second.log).toBe(0);
    expect(nonIdempotentStages(second.report), second.log).toEqual([]);
    expect(apt.requests()).toEqual([]);
    expect(sources.requests()).toEqual([]);
  });
});
