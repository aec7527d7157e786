// A t3 version change on a built devvm goes through the gate (docs/devvm.md
// stage 5 and "t3 stays up"): every user's ~/.t3/userdata/state.sqlite is
// copied, as that user, to /var/backups/t3-state/USER/state-prebump-FROM-TO.sqlite
// before the link switches, and a copy that fails keeps the version before;
// the health check runs on a copy of a populated database; after the switch
// the idle instances restart one at a time, each checked by a sign-in
// through the real t3-dispatch, a busy one is deferred to t3-migrate-idle,
// and the first failed sign-in rolls back to last-good with that user's
// database and sets the freeze; a pin below what ran is refused. The daily
// backup stops a copy after its cap and fails the run after trying every
// other user. Last, on the same box, the t3 watchdog: an instance that is
// active but stopped answering (SIGSTOP: the listener still accepts, nothing
// answers, as the live box's lost listener) is restarted after three failed
// probes, with a copy of its database first and a sign-in through t3-dispatch
// after; at three restarts in 30 minutes a hang gives WATCHDOG-EXHAUSTED and
// no restart. The watchdog's service is run by hand, not by its timer, with
// the probe limit and the grace after a start shortened by the settings the
// program reads (the rule with the spec's 120 s is the unit test's,
// stages/service-helpers.test.ts). The t3 stand-in keeps its own state in state.json, so the
// databases here are real sqlite ones made by the test, as their users.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pins } from "../lib/inputs/pins.ts";
import { settingVariables } from "../lib/inputs/settings.ts";
import { releaseOf } from "../lib/machine/releases.ts";
import { NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { buildIn, type BuildRun } from "./support/harness/build-in-vm.ts";
import { startBuiltBox } from "./support/harness/built-box.ts";
import { GO_CACHE_IN_BOX, seedGoCache } from "./support/harness/go-cache.ts";
import { PROJECT_PINS, writeInputs } from "./support/stand-ins/sources.ts";
import {
  T3_GATE_VERSIONS,
  T3_HEALTHY,
  T3_HEALTHY_LATER,
  T3_HEALTHY_NEXT,
  T3_MIGRATION_BROKEN,
  T3_SIGN_IN_BROKEN,
} from "./support/fixtures/t3/publish.ts";
import { startRegistryStandIn, type RegistryStandIn } from "./support/stand-ins/registry.ts";
import { startGoProxyStandIn, type GoProxyStandIn } from "./support/stand-ins/go-proxy.ts";

// dave is parked: no instance, no line in the map, and still a database
// that the new version would migrate the day he comes back.
const ROSTER = `users:
  alice: { authentik_user: alice.moreau, k8s_user: amoreau, tier: power-user }
  bob: { authentik_user: bkowalski, k8s_user: bob-k, tier: power-user }
  carol: { authentik_user: carol.n, k8s_user: carol-n, tier: power-user }
  dave: { authentik_user: dave.r, k8s_user: dave-r, tier: power-user, parked: true }
`;
const WITH_DATABASE = ["alice", "bob", "dave"];
const RUNNING = ["alice", "bob", "carol"];
const PREBUMP = `state-prebump-${T3_HEALTHY}-${T3_HEALTHY_NEXT}.sqlite`;
const BACKUPS = "/var/backups/t3-state";
const PROGRAM = `${PROJECT_DIR_IN_CONTAINER}/files/service/t3-state-backup`;
const TIMERS = "devvm-reconcile.timer devvm-t3-pin.timer t3-watchdog.timer t3-migrate-idle.timer";
const database = (user: string) => `/home/${user}/.t3/userdata/state.sqlite`;
const prebump = (user: string) => `${BACKUPS}/${user}/${PREBUMP}`;

describe("t3 version changes on a built devvm", () => {
  let registry: RegistryStandIn;
  let goProxy: GoProxyStandIn;
  let vm: DevvmContainer;
  let env: Record<string, string>;
  let moved: string;
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const build = async (inputs: string, stages: string): Promise<BuildRun> => {
    const started = Date.now();
    const run = await buildIn(vm, env, "--stage", stages, "--inputs", inputs);
    process.stderr.write(
      `build --stage ${stages} --inputs ${inputs}: exit ${run.exitCode} in ${Date.now() - started} ms\n${run.log}`,
    );
    return run;
  };
  const stageOf = (run: BuildRun, name: string) => run.report.stages.find((s) => s.name === name);
  const inputsWith = async (dir: string, t3: Pins["npm"]["t3"]) => {
    const pins = structuredClone(PROJECT_PINS);
    pins.npm.t3 = t3;
    await writeInputs(vm, dir, pins);
    await vm.exec(["sh", "-c", `printf %s "$ROSTER" > ${dir}/roster.yaml`], { check: true, env: { ROSTER } });
    return dir;
  };
  const rows = (file: string) => sh(`sqlite3 -readonly ${file} 'select id, title from threads order by id'`);
  /** Milliseconds since the epoch, to the microsecond: mtime (lstat for a link) or when a unit last became active. */
  const mtimeMs = async (file: string) =>
    Number(await sh(`${NODE_IN_CONTAINER} -p 'require("fs").lstatSync(process.argv.at(-1)).mtimeMs' ${file}`));
  const activeSinceMs = async (unit: string) => {
    const shown = await sh(`systemctl show --timestamp=us+utc -P ActiveEnterTimestamp ${unit}`);
    const [, day, time, micros] = /(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\.(\d{6}) UTC/.exec(shown) ?? [];
    if (!micros) throw new Error(`no ActiveEnterTimestamp for ${unit}: "${shown}"`);
    return Date.parse(`${day}T${time}Z`) + Number(micros) / 1000;
  };
  const mainPid = (user: string) => sh(`systemctl show -P MainPID t3-serve@${user}.service`);
  /** What the user's instance answers on GET /: the stand-in names its version. */
  const answer = async (user: string) => {
    const port = (await sh(`grep -m1 '^T3_PORT=' /etc/t3-serve/${user}.env`)).split("=")[1];
    return sh(`${NODE_IN_CONTAINER} -e 'fetch("http://127.0.0.1:${port}/").then((r) => r.text()).then(console.log)'`);
  };

  beforeAll(async () => {
    // A built devvm (sqlite3, node, t3 at the first version, the units), its roster's users running.
    [registry, vm, goProxy] = await Promise.all([
      startRegistryStandIn({ t3Versions: T3_GATE_VERSIONS }),
      startBuiltBox(),
      startGoProxyStandIn(),
    ]);
    env = { DEVVM_NPM_REGISTRY: registry.url };
    // Its timers would run builds and probes of their own, with the roster and pins it was built with, amid this test's.
    await vm.exec(`systemctl stop ${TIMERS}`, { check: true });
    // The built box has no t3-dispatch (no source was given): its stand-in, built as a box with a source builds it.
    await seedGoCache(vm, releaseOf(await vm.readFile("/etc/os-release"))!.key);
    env = {
      ...env,
      [settingVariables.t3DispatchSource]: `${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-dispatch`,
      [settingVariables.goProxy]: goProxy.url,
      [settingVariables.goCache]: GO_CACHE_IN_BOX,
    };
    const first = await build(
      await inputsWith("/opt/devvm-inputs/t3-0.0.26", {
        version: T3_HEALTHY,
        integrity: await registry.integrityOf("t3", T3_HEALTHY),
      }),
      "node,t3,service-helpers,users,units,instances",
    );
    if (first.exitCode !== 0) throw new Error(`the first build failed:\n${first.log}`);
    // The units stage started the timers again.
    await vm.exec(`systemctl stop ${TIMERS}`, { check: true });
    // Each database made by its user, as t3 would; alice's in WAL mode, as a busy one may be.
    for (const user of WITH_DATABASE) {
      const sql = `${user === "alice" ? "pragma journal_mode=wal; " : ""}create table threads(id integer primary key, title text); insert into threads(title) values ('${user}: first'), ('${user}: second');`;
      await vm.exec(
        [
          "runuser",
          "-u",
          user,
          "--",
          "sh",
          "-c",
          `mkdir -p /home/${user}/.t3/userdata && sqlite3 ${database(user)} "${sql}" >/dev/null`,
        ],
        { check: true },
      );
    }
    moved = await inputsWith("/opt/devvm-inputs/t3-0.0.28", {
      version: T3_HEALTHY_NEXT,
      integrity: await registry.integrityOf("t3", T3_HEALTHY_NEXT),
      approved: "container test: a healthy later release",
    });
  });
  afterAll(async () => {
    await vm?.exec(`kill -CONT $(systemctl show -P MainPID t3-serve@alice.service)`);
    await vm?.[Symbol.asyncDispose]();
    await registry?.stop();
    await goProxy?.stop();
  });

  it("runs every active user's instance on the first version, with no copy made (nothing was there to migrate)", async () => {
    for (const user of RUNNING) expect(await answer(user)).toContain(`t3 v${T3_HEALTHY} (stand-in)`);
    expect(await sh(`ls -A ${BACKUPS} 2>/dev/null || true`)).toBe("");
  });

  it("keeps the version before when a database cannot be copied, naming its user, and restarts nothing", async () => {
    const pids = await Promise.all(RUNNING.map(mainPid));
    // bob can no longer read his own database.
    await vm.exec(`chown root:root ${database("bob")} && chmod 0600 ${database("bob")}`, { check: true });
    try {
      const failed = await build(moved, "t3,instances");
      expect(failed.exitCode).toBe(1);
      const t3 = stageOf(failed, "t3");
      expect(t3?.outcome).toBe("failed");
      const message = t3 && "error" in t3 ? t3.error.message : "";
      expect(message).toContain(
        `the t3 state of bob could not be copied before t3 ${T3_HEALTHY_NEXT}, so t3 ${T3_HEALTHY} stays active`,
      );
      expect(message).toMatch(/unable to open database/);
      expect(stageOf(failed, "instances")?.outcome).toBe("not-run");

      expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
        linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY}/bin/t3`,
      });
      expect(await sh("t3 --version")).toBe(`t3 v${T3_HEALTHY}`);
      expect(await Promise.all(RUNNING.map(mainPid))).toEqual(pids);
      expect((await vm.exec("test -e /var/lib/devvm/pending-restarts.json")).exitCode).toBe(1);
      // The others were still tried; bob has no copy, not even a partial one.
      expect((await vm.exec(`test -e ${prebump("alice")}`)).exitCode).toBe(0);
      expect(await sh(`ls -A ${BACKUPS}/bob`)).toBe("");
    } finally {
      await vm.exec(`chown bob:bob ${database("bob")} && chmod 0644 ${database("bob")}`, { check: true });
    }
  });

  it("copies every database, as its user, before the links switch and before any instance restarts on the new version", async () => {
    const pids = await Promise.all(RUNNING.map(mainPid));
    const changes = [
      ...WITH_DATABASE.map((user) => ({ kind: "action", description: `copy ${user}'s t3 state to ${prebump(user)}` })),
      { kind: "package", name: "t3", from: T3_HEALTHY, to: T3_HEALTHY_NEXT },
    ];
    // --plan names the copies before making any.
    const plan = await buildIn(vm, env, "--stage", "t3", "--inputs", moved, "--plan");
    expect(stageOf(plan, "t3"), plan.log).toMatchObject({
      outcome: "pending",
      changes: [
        ...changes,
        {
          kind: "action",
          description: `restart the idle instances onto t3 ${T3_HEALTHY_NEXT} one at a time, each checked by a sign-in through t3-dispatch (4 running); a busy one is deferred to t3-migrate-idle`,
        },
      ],
    });

    const run = await build(moved, "t3,instances");
    expect(run.exitCode, run.log).toBe(0);
    // One at a time, in name order, each signed in to through t3-dispatch (wizard is no user of this roster).
    expect(stageOf(run, "t3")).toMatchObject({
      outcome: "changed",
      changes: [
        ...changes,
        ...RUNNING.map((user) => ({
          kind: "action",
          description: `CANARY ${user}: restarted onto t3 ${T3_HEALTHY_NEXT}; a sign-in through t3-dispatch set a t3_session cookie`,
        })),
      ],
    });
    expect(await sh("cat /var/lib/t3-autoupdate/last-good")).toBe(T3_HEALTHY_NEXT);

    const switched = await mtimeMs("/usr/local/bin/t3");
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY_NEXT}/bin/t3`,
    });
    for (const user of WITH_DATABASE) {
      expect(await vm.stat(`${BACKUPS}/${user}`)).toEqual({
        type: "directory",
        mode: "0700",
        owner: user,
        group: user,
      });
      expect(await vm.stat(prebump(user))).toMatchObject({ type: "file", owner: user, group: user });
      expect(await rows(prebump(user))).toBe(`1|${user}: first\n2|${user}: second`);
      expect(await rows(prebump(user))).toBe(await rows(database(user)));
      expect(await mtimeMs(prebump(user)), `${user}'s copy is older than the switch`).toBeLessThan(switched);
      expect(await sh(`ls -A ${BACKUPS}/${user}`)).toBe(PREBUMP);
    }
    // carol's t3 keeps no database: no copy, no folder.
    expect((await vm.exec(`test -e ${BACKUPS}/carol`)).exitCode).toBe(1);

    // Every running instance was restarted (idle) onto the new version, after its copy was made.
    for (const [i, user] of RUNNING.entries()) {
      expect(await mainPid(user)).not.toBe(pids[i]);
      expect(await activeSinceMs(`t3-serve@${user}.service`)).toBeGreaterThan(switched);
      expect(await answer(user)).toContain(`t3 v${T3_HEALTHY_NEXT} (stand-in)`);
    }
    expect((await vm.exec("test -e /var/lib/devvm/pending-restarts.json")).exitCode).toBe(1);
  });

  it("makes no copy when the version stays", async () => {
    const before = await sh(`stat -c '%n %Y' ${BACKUPS}/*/*`);
    const again = await build(moved, "t3,instances");
    expect(again.exitCode, again.log).toBe(0);
    expect(stageOf(again, "t3")?.outcome).toBe("unchanged");
    expect(await sh(`stat -c '%n %Y' ${BACKUPS}/*/*`)).toBe(before);
  });

  it("refuses to move t3 back below the version that has run, naming both and the lock that adopts it; every instance keeps the newer t3 and its database", async () => {
    const pids = await Promise.all(RUNNING.map(mainPid));
    const databases = await sh(`stat -c '%n %s %Y' ${WITH_DATABASE.map(database).join(" ")}`);
    const back = await build("/opt/devvm-inputs/t3-0.0.26", "t3,instances");
    expect(back.exitCode).toBe(1);
    const t3 = stageOf(back, "t3");
    expect(t3?.outcome).toBe("failed");
    const error = t3 && "error" in t3 ? t3.error : { message: "", hint: "" };
    expect(error.message).toContain(
      `t3 ${T3_HEALTHY} (pins.json) is older than t3 ${T3_HEALTHY_NEXT}, which has already run`,
    );
    expect(JSON.stringify(error)).toContain(`lock --update t3@${T3_HEALTHY_NEXT}`);
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY_NEXT}/bin/t3`,
    });
    expect(await Promise.all(RUNNING.map(mainPid))).toEqual(pids);
    for (const user of RUNNING) expect(await answer(user)).toContain(`t3 v${T3_HEALTHY_NEXT} (stand-in)`);
    expect(await sh(`stat -c '%n %s %Y' ${WITH_DATABASE.map(database).join(" ")}`)).toBe(databases);
  });

  it("daily: stops a copy at its cap and removes it, fails the run after trying every other user, and never rotates prebump copies", async () => {
    // alice's copy hangs after writing (a stuck copy); bob cannot read his database; carol is fine.
    const hang = `#!/bin/sh\n/usr/bin/sqlite3 "$@" || exit\n[ "$(id -un)" = alice ] && exec sleep 600\nexit 0\n`;
    await vm.exec(["sh", "-c", 'printf %s "$HANG" > /usr/local/bin/sqlite3 && chmod 0755 /usr/local/bin/sqlite3'], {
      check: true,
      env: { HANG: hang },
    });
    await vm.exec(`chown root:root ${database("bob")} && chmod 0600 ${database("bob")}`, { check: true });
    await vm.exec(
      [
        "runuser",
        "-u",
        "carol",
        "--",
        "sh",
        "-c",
        `sqlite3 ${database("carol")} "create table threads(id integer primary key, title text); insert into threads(title) values ('carol: only');"`,
      ],
      { check: true },
    );
    // 15 old daily copies and a prebump copy of carol's, as the backups would have left them.
    await vm.exec(
      `install -d -o carol -g carol -m 0700 ${BACKUPS}/carol && for d in 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15; do runuser -u carol -- touch ${BACKUPS}/carol/state-202001\${d}T000000Z.sqlite; done && runuser -u carol -- touch ${BACKUPS}/carol/state-prebump-0.0.25-0.0.26.sqlite`,
      { check: true },
    );
    try {
      const started = Date.now();
      const daily = await vm.exec(`T3_STATE_BACKUP_CAP=3s sh ${PROGRAM}`);
      const tookMs = Date.now() - started;
      process.stderr.write(`daily backup: exit ${daily.exitCode} in ${tookMs} ms\n${daily.stdout}${daily.stderr}`);

      expect(daily.exitCode).toBe(1);
      expect(tookMs).toBeLessThan(60_000);
      expect(daily.stderr).toContain(
        "t3-state-backup: backup of alice timed out after 3s; the partial copy was removed",
      );
      expect(daily.stderr).toMatch(/t3-state-backup: backup of bob failed \(the copy exited with 1\)/);
      // Tried after both failures, and done.
      expect(daily.stdout).toMatch(
        /^t3-state-backup: carol -> \/var\/backups\/t3-state\/carol\/state-\d{8}T\d{6}Z\.sqlite$/m,
      );

      // Nothing of the failed copies is left to pass for a backup; the prebump copies are untouched.
      expect(await sh(`ls -A ${BACKUPS}/alice`)).toBe(PREBUMP);
      expect(await sh(`ls -A ${BACKUPS}/bob`)).toBe(PREBUMP);
      const carol = (await sh(`ls -A ${BACKUPS}/carol`)).split("\n");
      expect(carol).toContain("state-prebump-0.0.25-0.0.26.sqlite");
      const daily14 = carol.filter((f) => /^state-\d{8}T\d{6}Z\.sqlite$/.test(f)).sort();
      expect(daily14).toHaveLength(14);
      expect(daily14).not.toContain("state-20200101T000000Z.sqlite");
      expect(daily14).not.toContain("state-20200102T000000Z.sqlite");
      expect(carol).toHaveLength(15);
      expect(
        await sh(`/usr/bin/sqlite3 -readonly ${BACKUPS}/carol/${daily14.at(-1)} 'select title from threads'`),
      ).toBe("carol: only");
      expect(await vm.stat(`${BACKUPS}/carol/${daily14.at(-1)}`)).toMatchObject({ type: "file", owner: "carol" });
      // The stuck copy was stopped, not left running.
      expect(
        await sh(
          "for c in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $c 2>/dev/null; echo; done | grep -c '^sleep 600' || true",
        ),
      ).toBe("0");
    } finally {
      await vm.exec(
        `rm -f /usr/local/bin/sqlite3 && chown bob:bob ${database("bob")} && chmod 0644 ${database("bob")}`,
        { check: true },
      );
    }
  });
  const pinTo = async (version: string) =>
    inputsWith(`/opt/devvm-inputs/t3-${version}`, {
      version,
      integrity: await registry.integrityOf("t3", version),
      approved: `container test: t3 ${version}`,
    });
  const errorOf = (run: BuildRun) => {
    const t3 = stageOf(run, "t3");
    return t3 && "error" in t3 ? t3.error : { message: "", hint: "" };
  };
  /** A oneshot's journal, run by hand, from a position on. */
  const journal = async (unit: string, from: string) =>
    (await vm.exec(["journalctl", "-u", unit, "--after-cursor", from, "-o", "cat", "--no-pager"])).stdout;
  /** The journal's position now: what a unit logs after it, and only that, is `journal(unit, since())`. */
  const since = () => sh("journalctl -n 1 -o cat --show-cursor --no-pager | sed -n 's/^-- cursor: //p'");
  const ALL = [...RUNNING, "wizard"];
  /** SQL on bob's database, as bob. */
  const asBob = (sql: string) =>
    vm.exec(["runuser", "-u", "bob", "--", "sqlite3", database("bob"), sql], { check: true });

  it("refuses a t3 whose migration fails on a populated database at the health check, on a copy of alice's, and switches nothing", async () => {
    const pids = await Promise.all(ALL.map(mainPid));
    const run = await build(await pinTo(T3_MIGRATION_BROKEN), "t3");
    expect(run.exitCode, run.log).toBe(1);
    const error = errorOf(run);
    expect(error.message).toContain(
      `t3 ${T3_MIGRATION_BROKEN} failed its health check on a copy of alice's state.sqlite (migration): \`t3 serve\` on a copy of a populated state.sqlite logged: PersistenceSqlError: migration 0031 failed`,
    );
    expect(error.message).toContain(`t3 ${T3_HEALTHY_NEXT} stays active`);
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY_NEXT}/bin/t3`,
    });
    expect((await vm.exec(`test -e /opt/devvm/npm/t3/${T3_MIGRATION_BROKEN}`)).exitCode).toBe(1);
    expect(await Promise.all(ALL.map(mainPid))).toEqual(pids);
    expect(await sh("cat /var/lib/t3-autoupdate/last-good")).toBe(T3_HEALTHY_NEXT);
  });

  it("defers a busy instance (an agent child) at a switch, and t3-migrate-idle moves it once idle and clears its marker", async () => {
    // An agent of bob's: a child of his t3 server named claude.
    await sh("install -d /opt/agent && cp /bin/sleep /opt/agent/claude");
    const bobPort = (await sh("grep -m1 '^T3_PORT=' /etc/t3-serve/bob.env")).split("=")[1];
    await sh(
      `curl -sf -X POST -d '{"command":"exec /opt/agent/claude 600"}' http://127.0.0.1:${bobPort}/api/stand-in/spawn`,
    );
    // bob's database as the live t3 keeps it: a session updated just now, no turn running.
    await asBob(
      "create table projection_thread_sessions(thread_id text, active_turn_id text, updated_at text); insert into projection_thread_sessions values ('t1', null, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));",
    );
    const bobPid = await mainPid("bob");
    const run = await build(await pinTo(T3_HEALTHY_LATER), "t3");
    expect(run.exitCode, run.log).toBe(0);
    const t3 = stageOf(run, "t3");
    const lines = t3 && "changes" in t3 ? t3.changes.map((c) => ("description" in c ? c.description : "")) : [];
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^DEFERRED bob: busy: claude pid \\d+; t3-migrate-idle moves it to t3 ${T3_HEALTHY_LATER.replace(/\./g, "\\.")} once idle$`,
        ),
      ),
    );
    for (const user of ["alice", "carol"]) {
      expect(lines).toContain(
        `CANARY ${user}: restarted onto t3 ${T3_HEALTHY_LATER}; a sign-in through t3-dispatch set a t3_session cookie`,
      );
      expect(await answer(user)).toContain(`t3 v${T3_HEALTHY_LATER} (stand-in)`);
    }
    expect(await mainPid("bob")).toBe(bobPid);
    expect(await answer("bob")).toContain(`t3 v${T3_HEALTHY_NEXT} (stand-in)`);
    expect(await sh("cat /var/lib/t3-autoupdate/deferred/bob")).toBe(`${T3_HEALTHY_LATER}\nfrom=${T3_HEALTHY_NEXT}`);
    expect(await sh("cat /var/lib/t3-autoupdate/last-good")).toBe(T3_HEALTHY_LATER);

    // The agent ends; the database still says bob worked a moment ago: the night round waits.
    const agent = /^DEFERRED bob: busy: claude pid (\d+);/m.exec(lines.join("\n"))?.[1];
    await sh(`kill ${agent} && sleep 0.5`);
    let from = await since();
    await sh("systemctl start t3-migrate-idle.service");
    expect(await journal("t3-migrate-idle.service", from)).toMatch(
      /DEFERRED bob: still waits \(busy: its last update was 0 min ago\); tried again next round/,
    );
    expect(await mainPid("bob")).toBe(bobPid);
    expect((await vm.exec("test -e /var/lib/t3-autoupdate/deferred/bob")).exitCode).toBe(0);

    // 20 minutes without an update: idle. The night round copies, restarts, signs in, clears the marker.
    await asBob(
      "update projection_thread_sessions set updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-20 minutes');",
    );
    from = await since();
    await sh("systemctl start t3-migrate-idle.service");
    const log = await journal("t3-migrate-idle.service", from);
    expect(log).toContain(
      `DEFERRED bob: moved to t3 ${T3_HEALTHY_LATER}; a sign-in through t3-dispatch set a t3_session cookie`,
    );
    expect(await mainPid("bob")).not.toBe(bobPid);
    expect(await answer("bob")).toContain(`t3 v${T3_HEALTHY_LATER} (stand-in)`);
    expect((await vm.exec("test -e /var/lib/t3-autoupdate/deferred/bob")).exitCode).toBe(1);
    expect(await rows(`${BACKUPS}/bob/state-prebump-${T3_HEALTHY_NEXT}-${T3_HEALTHY_LATER}.sqlite`)).toBe(
      await rows(database("bob")),
    );
  });

  it("rolls back to last-good when the first restart's sign-in fails: that user's database put back, the freeze set, no other instance restarted; the next build leaves t3 alone", async () => {
    const others = ["bob", "carol", "wizard"];
    const pids = await Promise.all(others.map(mainPid));
    // The one sign-in expected to fail need not take the spec's 30 s: the setting shortens it.
    const run = await buildIn(
      vm,
      { ...env, DEVVM_T3_SIGN_IN_TIMEOUT: "2" },
      "--stage",
      "t3",
      "--inputs",
      await pinTo(T3_SIGN_IN_BROKEN),
    );
    process.stderr.write(`build --stage t3 (t3 ${T3_SIGN_IN_BROKEN}): exit ${run.exitCode}\n${run.log}`);
    expect(run.exitCode, run.log).toBe(1);
    const error = errorOf(run);
    expect(error.message).toContain(
      `t3 ${T3_SIGN_IN_BROKEN} failed its canary: after t3-serve@alice.service restarted onto it, a sign-in through t3-dispatch saw HTTP`,
    );
    expect(error.message).toMatch(/saw HTTP 502, no cookie: .* \(for 2 s\)/);
    expect(error.message).toContain(`t3 is back at ${T3_HEALTHY_LATER} (last-good)`);
    const copy = `${BACKUPS}/alice/state-prebump-${T3_HEALTHY_LATER}-${T3_SIGN_IN_BROKEN}.sqlite`;
    expect(error.message).toContain(`alice's state.sqlite is ${copy} again`);
    expect(run.log).toMatch(/ROLLBACK alice: /);

    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY_LATER}/bin/t3`,
    });
    expect((await vm.exec(`cmp ${copy} ${database("alice")}`)).exitCode).toBe(0);
    expect(await vm.stat(database("alice"))).toMatchObject({ type: "file", mode: "0600", owner: "alice" });
    expect(await sh(`ls -A /home/alice/.t3/userdata | grep -c 'state.sqlite-' || true`)).toBe("0");
    expect(await sh("head -n 1 /etc/t3-autoupdate.freeze")).toContain(`t3 ${T3_SIGN_IN_BROKEN} failed its canary`);
    expect(await Promise.all(others.map(mainPid))).toEqual(pids);
    expect(await sh("systemctl is-active t3-serve@alice.service")).toBe("active");
    expect(await answer("alice")).toContain(`t3 v${T3_HEALTHY_LATER} (stand-in)`);
    expect(await sh("cat /var/lib/t3-autoupdate/last-good")).toBe(T3_HEALTHY_LATER);

    const again = await build(await pinTo(T3_SIGN_IN_BROKEN), "t3");
    expect(again.exitCode, again.log).toBe(0);
    expect(stageOf(again, "t3")).toMatchObject({
      outcome: "skipped",
      reason: expect.stringContaining("a freeze holds: /etc/t3-autoupdate.freeze exists"),
    });
    expect(again.log).toContain("FROZEN t3 stays at");
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY_LATER}/bin/t3`,
    });
  });
  it("goes back below the newest t3 that ran only when named, every database put back as its copy from then", async () => {
    await sh("rm /etc/t3-autoupdate.freeze");
    const back = await pinTo(T3_HEALTHY_NEXT);
    const refused = await build(back, "t3");
    expect(refused.exitCode).toBe(1);
    expect(errorOf(refused).message).toContain(
      `t3 ${T3_HEALTHY_NEXT} (pins.json) is older than t3 ${T3_SIGN_IN_BROKEN}, which has already run`,
    );
    expect(errorOf(refused).hint).toContain(`build.ts --stage t3 --t3-back-to ${T3_HEALTHY_NEXT}`);

    const users = [...WITH_DATABASE, "carol"];
    const copies = Object.fromEntries(
      await Promise.all(
        users.map(async (user) => [
          user,
          await sh(`ls -t ${BACKUPS}/${user}/state-prebump-${T3_HEALTHY_NEXT}-*.sqlite | head -n 1`),
        ]),
      ),
    ) as Record<string, string>;
    const run = await buildIn(vm, env, "--stage", "t3", "--inputs", back, "--t3-back-to", T3_HEALTHY_NEXT);
    process.stderr.write(`build --stage t3 --t3-back-to ${T3_HEALTHY_NEXT}: exit ${run.exitCode}\n${run.log}`);
    expect(run.exitCode, run.log).toBe(0);
    expect(await vm.stat("/usr/local/bin/t3")).toMatchObject({
      linkTarget: `/opt/devvm/npm/t3/${T3_HEALTHY_NEXT}/bin/t3`,
    });
    for (const user of users) {
      expect((await vm.exec(`cmp ${copies[user]} ${database(user)}`)).exitCode, `${user}: ${copies[user]}`).toBe(0);
      expect(run.log).toContain(
        `ROLLBACK ${user} (--t3-back-to ${T3_HEALTHY_NEXT}): state.sqlite is ${copies[user]} again`,
      );
    }
    for (const user of [...RUNNING, "wizard"])
      expect(await answer(user)).toContain(`t3 v${T3_HEALTHY_NEXT} (stand-in)`);
    for (const user of RUNNING)
      expect(run.log).toContain(
        `ROLLBACK ${user}: started on t3 ${T3_HEALTHY_NEXT}; a sign-in through t3-dispatch set a t3_session cookie`,
      );
    expect(await sh("cat /var/lib/devvm/t3-newest-run")).toBe(T3_HEALTHY_NEXT);
    const again = await build(back, "t3");
    expect(stageOf(again, "t3")?.outcome).toBe("unchanged");
  });
  describe("t3-watchdog", () => {
    const UNIT = "t3-serve@alice.service";
    const GRACE_S = 1;
    const watchdogJournal = (from: string) => journal("t3-watchdog.service", from);
    /** One run of the watchdog, as its timer would start it. */
    const watch = () => vm.exec("systemctl start t3-watchdog.service");
    /** Stops alice's server (it stays "active") once it is past the grace. */
    const hang = async () => {
      await sh(`sleep ${GRACE_S + 1} && kill -STOP $(systemctl show -P MainPID ${UNIT})`);
    };
    const restartCopies = async () =>
      (await sh(`ls ${BACKUPS}/alice`)).split("\n").filter((f) => f.startsWith("state-restart-"));

    // Run by hand many times a minute: systemd's start limit (5 in 10 s) is lifted for it.
    beforeAll(async () => {
      await sh(
        `mkdir -p /etc/systemd/system/t3-watchdog.service.d && printf '[Unit]\\nStartLimitIntervalSec=0\\n[Service]\\nEnvironment=T3_WATCHDOG_PROBE_TIMEOUT=1 T3_WATCHDOG_GRACE=${GRACE_S}\\n' > /etc/systemd/system/t3-watchdog.service.d/test.conf && systemctl daemon-reload`,
      );
    });

    it("is installed, enabled and its timer runs every minute", async () => {
      expect(await sh("systemctl is-enabled t3-watchdog.timer")).toBe("enabled");
      expect(await sh("systemctl show -P AccuracyUSec t3-watchdog.timer")).toBe("10s");
      expect(await sh("systemctl show -P Persistent t3-watchdog.timer")).toBe("no");
    });

    it("restarts a hung instance only at the third failed probe, copies its database first, and a sign-in through t3-dispatch then works", async () => {
      const from = await since();
      await hang();
      const hung = await mainPid("alice");
      for (const probe of [1, 2]) {
        expect((await watch()).exitCode).toBe(0);
        expect(await mainPid("alice"), `restarted after probe ${probe}`).toBe(hung);
      }
      const third = await watch();
      expect(third.exitCode, await watchdogJournal(from)).toBe(0);
      expect(await mainPid("alice")).not.toBe(hung);
      expect(await sh(`systemctl is-active ${UNIT}`)).toBe("active");
      const log = await watchdogJournal(from);
      expect(log).toMatch(/^WATCHDOG alice: probe of port \d+ failed \(timeout after 1 s\), 1 in a row$/m);
      expect(log).toContain(`WATCHDOG alice: restarting ${UNIT} after 3 failed probes in a row`);
      expect(log).toContain("WATCHDOG alice: restarted; a sign-in through t3-dispatch set a t3_session cookie");
      // The other instances answered: nothing about them.
      expect(log).not.toMatch(/WATCHDOG (bob|carol|wizard)/);
      const copies = await restartCopies();
      expect(copies).toEqual([expect.stringMatching(/^state-restart-\d{8}T\d{6}Z\.sqlite$/)]);
      expect(await rows(`${BACKUPS}/alice/${copies[0]}`)).toBe(await rows(database("alice")));
      const signIn = await sh(
        "curl -s -o /dev/null -D - --max-time 30 -H 'X-authentik-username: alice.moreau' -H 'Sec-Fetch-Dest: document' http://127.0.0.1:3780/",
      );
      expect(signIn).toMatch(/^set-cookie: t3_session/im);
    });

    it("at three restarts within 30 minutes, logs WATCHDOG-EXHAUSTED at the next hang and restarts nothing", async () => {
      // Two more restarts in its record, as two more hangs would have left (each is the restart above again).
      await sh("date +%s >> /run/t3-watchdog/alice.restarts && date +%s >> /run/t3-watchdog/alice.restarts");
      const from = await since();
      await hang();
      const hung = await mainPid("alice");
      for (let probe = 0; probe < 4; probe++) expect((await watch()).exitCode).toBe(0);
      expect(await mainPid("alice")).toBe(hung);
      expect(await sh(`systemctl is-active ${UNIT}`)).toBe("active");
      const log = await watchdogJournal(from);
      expect(log.match(/^WATCHDOG-EXHAUSTED alice: 3 restarts in the last 30 minutes did not help/gm)).toHaveLength(1);
      expect(log).not.toContain("restarting");
      expect(await restartCopies()).toHaveLength(1);
    });
  });
});
