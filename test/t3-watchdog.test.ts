// The t3 watchdog on a built devvm (docs/devvm.md, "t3 stays up"): an
// instance that is active but stopped answering (SIGSTOP: the listener
// still accepts, nothing answers, as the live box's lost listener) is
// restarted after three failed probes, with a copy of its database first and
// a sign-in through t3-dispatch after; a fourth hang within 30 minutes of
// three restarts gives WATCHDOG-EXHAUSTED and no restart. The watchdog's
// service is run by hand, not by its timer, with the probe limit and the
// grace after a start shortened by the settings the program reads (the rule
// with the spec's 120 s is the unit test's, stages/service-helpers.test.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { BUILT_BOX_INPUTS, startBuiltBox } from "./support/harness/built-box.ts";
import { buildIn } from "./support/harness/build-in-vm.ts";
import { PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import { GO_CACHE_IN_BOX, seedGoCache } from "./support/harness/go-cache.ts";
import { settingVariables } from "../lib/inputs/settings.ts";
import { releaseOf } from "../lib/machine/releases.ts";
import { startGoProxyStandIn, type GoProxyStandIn } from "./support/stand-ins/go-proxy.ts";

const USER = "alice";
const UNIT = `t3-serve@${USER}.service`;
const GRACE_S = 2;
const FOLDER = `/home/${USER}/.t3/userdata`;
const DATABASE = `${FOLDER}/state.sqlite`;

describe("t3-watchdog on a built devvm", () => {
  let vm: DevvmContainer;
  let goProxy: GoProxyStandIn;
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const mainPid = () => sh(`systemctl show -P MainPID ${UNIT}`);
  /** A time for journalctl --since from which on only what comes next is logged (it counts whole seconds). */
  const since = () => sh("date -d '+1 second' '+%Y-%m-%d %H:%M:%S' && sleep 1.1");
  const journal = async (from: string) =>
    (await vm.exec(["journalctl", "-u", "t3-watchdog.service", "--since", from, "-o", "cat", "--no-pager"])).stdout;
  /** One run of the watchdog, as its timer would start it. */
  const watch = () => vm.exec("systemctl start t3-watchdog.service");
  /** Stops the instance's server (it stays "active") once it is past the grace. */
  const hang = async () => {
    await sh(`sleep ${GRACE_S + 1} && kill -STOP $(systemctl show -P MainPID ${UNIT})`);
  };
  const signIn = () =>
    sh(
      "curl -s -o /dev/null -D - --max-time 30 -H 'X-authentik-username: alice.moreau' -H 'Sec-Fetch-Dest: document' http://127.0.0.1:3780/",
    );

  beforeAll(async () => {
    [vm, goProxy] = await Promise.all([startBuiltBox(), startGoProxyStandIn()]);
    // The built box has no t3-dispatch (no source was given): its stand-in, built as a box with a source builds it.
    await seedGoCache(vm, releaseOf(await vm.readFile("/etc/os-release"))!.key);
    const started = Date.now();
    const dispatch = await buildIn(
      vm,
      {
        [settingVariables.t3DispatchSource]: `${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-dispatch`,
        [settingVariables.goProxy]: goProxy.url,
        [settingVariables.goCache]: GO_CACHE_IN_BOX,
      },
      "--stage",
      "service-helpers,units",
      "--inputs",
      BUILT_BOX_INPUTS,
    );
    process.stderr.write(`t3-dispatch built and started in ${Date.now() - started} ms\n`);
    if (dispatch.exitCode !== 0) throw new Error(`t3-dispatch was not built:\n${dispatch.log}`);
    // Its timers would run builds, and probes, of their own amid this test's (a probe of the
    // timer's and one of the test's at once are one run). After the build: the units stage starts them.
    await sh("systemctl stop t3-watchdog.timer devvm-reconcile.timer devvm-t3-pin.timer");
    await sh(
      `mkdir -p /etc/systemd/system/t3-watchdog.service.d && printf '[Service]\\nEnvironment=T3_WATCHDOG_PROBE_TIMEOUT=1 T3_WATCHDOG_GRACE=${GRACE_S}\\n' > /etc/systemd/system/t3-watchdog.service.d/test.conf && systemctl daemon-reload`,
    );
    // The stand-in keeps its own state in state.json: a real sqlite database, made by its user, for the copy.
    const sql = "create table threads(id integer primary key, title text); insert into threads(title) values ('kept');";
    await vm.exec(["runuser", "-u", USER, "--", "sh", "-c", `mkdir -p ${FOLDER} && sqlite3 ${DATABASE} "${sql}"`], {
      check: true,
    });
  });
  afterAll(async () => {
    await vm?.exec(`kill -CONT $(systemctl show -P MainPID ${UNIT})`);
    await vm?.[Symbol.asyncDispose]();
    await goProxy?.stop();
  });

  it("is installed, enabled and its timer runs every minute", async () => {
    expect(await sh("systemctl is-enabled t3-watchdog.timer")).toBe("enabled");
    expect(await sh("systemctl show -P AccuracyUSec t3-watchdog.timer")).toBe("10s");
    expect(await sh("systemctl show -P Persistent t3-watchdog.timer")).toBe("no");
  });

  it("restarts a hung instance only at the third failed probe, copies its database first, and a sign-in through t3-dispatch then works", async () => {
    const from = await since();
    await hang();
    const hung = await mainPid();
    for (const probe of [1, 2]) {
      expect((await watch()).exitCode).toBe(0);
      expect(await mainPid(), `restarted after probe ${probe}`).toBe(hung);
    }
    const third = await watch();
    expect(third.exitCode, await journal(from)).toBe(0);
    expect(await mainPid()).not.toBe(hung);
    expect(await sh(`systemctl is-active ${UNIT}`)).toBe("active");
    const log = await journal(from);
    expect(log).toMatch(/^WATCHDOG alice: probe of port \d+ failed \(timeout after 1 s\), 1 in a row$/m);
    expect(log).toContain("WATCHDOG alice: restarting t3-serve@alice.service after 3 failed probes in a row");
    expect(log).toContain("WATCHDOG alice: restarted; a sign-in through t3-dispatch set a t3_session cookie");
    // The other instances answered: nothing about them.
    expect(log).not.toMatch(/WATCHDOG (bob|wizard)/);
    const copies = (await sh(`ls /var/backups/t3-state/${USER}`)).split("\n");
    expect(copies).toEqual([expect.stringMatching(/^state-restart-\d{8}T\d{6}Z\.sqlite$/)]);
    expect(await sh(`sqlite3 -readonly /var/backups/t3-state/${USER}/${copies[0]} 'select title from threads'`)).toBe(
      "kept",
    );
    expect(await signIn()).toMatch(/^set-cookie: t3_session/im);
  });

  it("after three restarts within 30 minutes, logs WATCHDOG-EXHAUSTED at the next hang and restarts nothing", async () => {
    // Restarts two and three.
    const started = await since();
    for (const restart of [2, 3]) {
      await hang();
      const hung = await mainPid();
      for (let probe = 0; probe < 3; probe++) await watch();
      expect(await mainPid(), `restart ${restart}:\n${await journal(started)}`).not.toBe(hung);
    }
    const from = await since();
    await hang();
    const hung = await mainPid();
    for (let probe = 0; probe < 4; probe++) expect((await watch()).exitCode).toBe(0);
    expect(await mainPid()).toBe(hung);
    expect(await sh(`systemctl is-active ${UNIT}`)).toBe("active");
    const log = await journal(from);
    expect(log.match(/^WATCHDOG-EXHAUSTED alice: 3 restarts in the last 30 minutes did not help/gm)).toHaveLength(1);
    expect(log).not.toContain("restarting");
    // The newest three copies stay.
    expect((await sh(`ls /var/backups/t3-state/${USER}`)).split("\n")).toHaveLength(3);
  });
});
