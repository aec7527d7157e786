// Backups around a t3 version change on a built devvm (docs/devvm.md stages
// 5 and 12): before a new t3 can reach any instance, every user's
// ~/.t3/userdata/state.sqlite is copied, as that user, to
// /var/backups/t3-state/USER/state-prebump-FROM-TO.sqlite, and a copy that
// fails keeps the version before; the daily backup stops a copy after its
// cap and fails the run after trying every other user. The t3 stand-in keeps
// its own state in state.json, so the databases here are real sqlite ones
// made by the test, as their users.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pins } from "../lib/inputs/pins.ts";
import { NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { buildIn, type BuildRun } from "./support/harness/build-in-vm.ts";
import { startBuiltBox } from "./support/harness/built-box.ts";
import { PROJECT_PINS, writeInputs } from "./support/stand-ins/sources.ts";
import { T3_HEALTHY, T3_HEALTHY_NEXT } from "./support/fixtures/t3/publish.ts";
import { startRegistryStandIn, type RegistryStandIn } from "./support/stand-ins/registry.ts";

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
const database = (user: string) => `/home/${user}/.t3/userdata/state.sqlite`;
const prebump = (user: string) => `${BACKUPS}/${user}/${PREBUMP}`;

describe("t3 state backups on a built devvm", () => {
  let registry: RegistryStandIn;
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
    [registry, vm] = await Promise.all([startRegistryStandIn(), startBuiltBox()]);
    env = { DEVVM_NPM_REGISTRY: registry.url };
    // Its timers would run builds of their own, with the roster and pins it was built with, amid this test's.
    await vm.exec("systemctl stop devvm-reconcile.timer devvm-t3-pin.timer", { check: true });
    const first = await build(
      await inputsWith("/opt/devvm-inputs/t3-0.0.26", {
        version: T3_HEALTHY,
        integrity: await registry.integrityOf("t3", T3_HEALTHY),
      }),
      "node,t3,users,instances",
    );
    if (first.exitCode !== 0) throw new Error(`the first build failed:\n${first.log}`);
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
    await vm?.[Symbol.asyncDispose]();
    await registry?.stop();
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
    expect(stageOf(plan, "t3"), plan.log).toMatchObject({ outcome: "pending", changes });

    const run = await build(moved, "t3,instances");
    expect(run.exitCode, run.log).toBe(0);
    expect(stageOf(run, "t3")).toMatchObject({ outcome: "changed", changes });

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
});
