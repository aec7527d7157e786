// tmux-persist on a booted box of the test release (systemd as PID 1), installed by the
// builder's stages service-helpers and units, with the stage sessions that
// gives non-admins the current launcher and moves an old single save into the
// series: a mapped user's tmux sessions, started by the real launcher with a
// stand-in claude, are saved as snapshots, her tmux server goes away, and
// restore brings each session back in its folder resuming its own
// conversation. Checked from outside.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { buildIn, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";

const STAGES = "service-helpers,units,sessions";
const STATE = "/var/lib/tmux-persist";
const SAVED = `${STATE}/alice.tsv`;
const SNAPSHOTS = `${STATE}/snapshots/alice`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// The conversation of the old single save, and that save as the builder wrote it before the series.
const OLD_CONVERSATION = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
const OLD_SAVE = `# tmux-persist: session=NAME path=DIR claude=ID\nsession=old\tpath=/tmp\tclaude=${OLD_CONVERSATION}\nsession=pool.3\tpath=/tmp\tclaude=\n`;
// bob's, of NAME DIR UUID rows, the series' own: a pool slot and a conversation that is no id are dropped.
const OLD_POSITIONAL_SAVE = `notes\t/home/bob\t${OLD_CONVERSATION}\npool.3\t/tmp\t-\nmisc\t/tmp\tnot-an-id\n`;
// Stands in for claude (on PATH where the claude-code stage puts it): records
// where it runs and its arguments, and keeps running as itself (its command
// line is what a save reads). With TRANSCRIPTS="UUID:TITLE ..." it writes
// those transcripts in its folder's project, as claude would.
const CLAUDE_STAND_IN = `#!/bin/sh
echo "$PWD [$*]" >> "$HOME/claude-argv.log"
if [ -n "\${TRANSCRIPTS:-}" ]; then
  project="$HOME/.claude/projects/$(printf %s "$PWD" | tr -c 'a-zA-Z0-9' '-')"
  mkdir -p "$project"
  for t in $TRANSCRIPTS; do
    echo '{"type":"user"}' >> "$project/\${t%%:*}.jsonl"
    [ -z "\${t#*:}" ] || echo "{\\"type\\":\\"custom-title\\",\\"customTitle\\":\\"\${t#*:}\\"}" >> "$project/\${t%%:*}.jsonl"
  done
fi
sleep infinity
`;
// What alice and wizard had before the builder's launcher reached existing homes.
const OLD_LAUNCHER = `#!/bin/sh\nexec claude "$@"\n`;
const TWO = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"];

interface Row {
  name: string;
  dir: string;
  uuid: string;
}

describe("tmux-persist on a booted box of the test release", () => {
  let vm: DevvmContainer;
  let first: BuildRun;
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const asAlice = (command: string) => sh(`runuser -u alice -- ${command}`);
  const build = async () => {
    const started = Date.now();
    const run = await buildIn(vm, {}, "--stage", STAGES);
    process.stderr.write(`build --stage ${STAGES}: exit ${run.exitCode} in ${Date.now() - started} ms\n${run.log}`);
    return run;
  };
  const outcomes = (run: BuildRun) => Object.fromEntries(run.report.stages.map((s) => [s.name, s.outcome]));
  const sessions = async () =>
    (await asAlice("tmux list-sessions -F '#{session_name} #{pane_current_path}'")).split("\n").sort();
  const sessionNames = async () => (await asAlice("tmux list-sessions -F '#{session_name}'")).split("\n").sort();
  const hasServer = async () => (await vm.exec("runuser -u alice -- tmux list-sessions")).exitCode === 0;
  /** A snapshot's rows (the newest: USER.tsv), sorted by name. */
  const rows = async (file = SAVED): Promise<Row[]> =>
    (await vm.readFile(file))
      .split("\n")
      .filter((line) => line && !line.startsWith("#"))
      .map((line) => {
        const [name, dir, uuid, ...rest] = line.split("\t");
        expect(rest, line).toEqual([]);
        return { name: name!, dir: dir!, uuid: uuid! };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  const snapshots = async () => (await sh(`ls ${SNAPSHOTS}`)).split("\n").filter(Boolean);
  /** Each claude call: its folder and arguments. */
  const calls = async () =>
    (await vm.exec("cat /home/alice/claude-argv.log")).stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => ({ cwd: line.slice(0, line.indexOf(" [")), args: line.slice(line.indexOf(" [") + 2, -1) }));
  const sessionIdOf = (args: string) => / --session-id (\S+)/.exec(args)?.[1];
  const until = async (what: string, done: () => Promise<boolean>) => {
    for (let i = 0; i < 100; i++) {
      if (await done()) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const callsReach = (count: number) => until(`${count} claude calls`, async () => (await calls()).length >= count);
  const tmuxPersist = (args: string) => vm.exec(`tmux-persist ${args}`);
  // The test starts them more often than systemd's start limit (5 in 10 s) allows a unit: reset first.
  const save = () =>
    vm.exec("systemctl reset-failed tmux-persist-save.service; systemctl start tmux-persist-save.service");
  const restore = () =>
    vm.exec("systemctl reset-failed tmux-persist-restore.service; systemctl start tmux-persist-restore.service");
  const journal = (unit: string) => sh(`journalctl -u ${unit} -o cat --no-pager | tail -20`);

  beforeAll(async () => {
    vm = await startFreshVm();
    const t0 = Date.now();
    await vm.exec("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux", { check: true });
    process.stderr.write(`apt-get install tmux: ${Date.now() - t0} ms\n`);
    // The units stage verifies the timers' services, which run the pinned node; the launcher reads ~/.claude.json with it.
    await vm.exec(`ln -s ${NODE_IN_CONTAINER} /usr/local/bin/node`, { check: true });
    await vm.exec(["sh", "-c", 'printf %s "$CLAUDE" > /usr/local/bin/claude && chmod 755 /usr/local/bin/claude'], {
      check: true,
      env: { CLAUDE: CLAUDE_STAND_IN },
    });
    // The roster's alice and bob (non-admins) and wizard (admin), as on a box built before the launcher reached
    // existing homes: alice and wizard have an old launcher, bob pointed his at a file only root may write.
    await vm.exec(
      "useradd -m -s /bin/bash alice && useradd -m bob && useradd -m wizard && chown wizard: /home/wizard && printf '# generated\\n# do not edit\\nalice.moreau=alice\\n' > /etc/ttyd-user-map && " +
        `for u in alice wizard; do runuser -u $u -- sh -c 'mkdir -p ~/code && printf %s "$LAUNCHER" > ~/start-claude.sh && chmod 755 ~/start-claude.sh'; done && ` +
        "runuser -u bob -- ln -s /etc/shadow /home/bob/start-claude.sh && " +
        // alice's old single save, from before the series.
        `install -d -m 0700 ${STATE} && printf %s "$OLD_SAVE" > ${SAVED} && chmod 600 ${SAVED} && touch -d '2026-07-01 12:00:00 UTC' ${SAVED} && ` +
        `printf %s "$OLD_POSITIONAL_SAVE" > ${STATE}/bob.tsv && touch -d '2026-06-30 08:00:00 UTC' ${STATE}/bob.tsv`,
      { check: true, env: { LAUNCHER: OLD_LAUNCHER, OLD_SAVE, OLD_POSITIONAL_SAVE } },
    );
    first = await build();
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("installs the program and timers, gives the non-admin the current launcher, moves the old save into the series; a second build changes nothing", async () => {
    const shadow = await sh("sha256sum /etc/shadow");
    expect(first.exitCode, first.log).toBe(0);
    expect(outcomes(first)).toMatchObject({ "service-helpers": "changed", units: "changed", sessions: "changed" });
    expect(await vm.stat("/usr/local/bin/tmux-persist")).toEqual({
      type: "file",
      mode: "0755",
      owner: "root",
      group: "root",
    });
    for (const unit of ["tmux-persist-save.service", "tmux-persist-save.timer", "tmux-persist-restore.service"]) {
      expect(await vm.stat(`/etc/systemd/system/${unit}`)).toMatchObject({ mode: "0644", owner: "root" });
    }
    expect(await sh("systemctl is-enabled tmux-persist-save.timer tmux-persist-restore.service")).toBe(
      "enabled\nenabled",
    );
    expect(await sh("systemctl is-active tmux-persist-save.timer")).toBe("active");
    // At boot, restore comes before the first save.
    expect((await sh("systemctl show -P Before tmux-persist-restore.service")).split(" ")).toEqual(
      expect.arrayContaining(["tmux-persist-save.timer", "tmux-persist-save.service"]),
    );
    // Restore never ran: at build time it would bring back sessions closed since.
    expect(await sh("systemctl show -P ExecMainStartTimestampMonotonic tmux-persist-restore.service")).toBe("0");

    // alice (non-admin) has the current launcher, as hers; wizard (admin) keeps his; bob's link is named, not followed.
    expect(await vm.readFile("/home/alice/start-claude.sh")).toBe(
      await vm.readFile(`${PROJECT_DIR_IN_CONTAINER}/files/skel/start-claude.sh`),
    );
    expect(await vm.stat("/home/alice/start-claude.sh")).toEqual({
      type: "file",
      mode: "0755",
      owner: "alice",
      group: "alice",
    });
    expect(await vm.readFile("/home/wizard/start-claude.sh")).toBe(OLD_LAUNCHER);
    expect(await vm.stat("/home/bob/start-claude.sh")).toMatchObject({ type: "symlink", linkTarget: "/etc/shadow" });
    expect(await sh("sha256sum /etc/shadow")).toBe(shadow);
    const sessionsStage = first.report.stages.find((s) => s.name === "sessions");
    expect(sessionsStage && "warnings" in sessionsStage ? sessionsStage.warnings : undefined).toEqual([
      expect.stringMatching(/\/home\/bob\/start-claude\.sh is a link to \/etc\/shadow/),
    ]);

    // The old single save is a snapshot of its own time, its pool slot dropped; USER.tsv links to it.
    expect(await snapshots()).toEqual(["20260701T120000.tsv"]);
    expect(await vm.stat(SAVED)).toMatchObject({
      type: "symlink",
      linkTarget: "snapshots/alice/20260701T120000.tsv",
    });
    expect(await rows()).toEqual([{ name: "old", dir: "/tmp", uuid: OLD_CONVERSATION }]);
    expect(await rows(`${STATE}/bob.tsv`)).toEqual([
      { name: "misc", dir: "/tmp", uuid: "-" },
      { name: "notes", dir: "/home/bob", uuid: OLD_CONVERSATION },
    ]);
    expect(await vm.stat(`${STATE}/bob.tsv`)).toMatchObject({
      type: "symlink",
      linkTarget: "snapshots/bob/20260630T080000.tsv",
    });
    expect(await vm.stat(SNAPSHOTS)).toEqual({ type: "directory", mode: "0700", owner: "root", group: "root" });
    expect(await vm.stat(`${SNAPSHOTS}/20260701T120000.tsv`)).toEqual({
      type: "file",
      mode: "0600",
      owner: "root",
      group: "root",
    });

    const second = await build();
    expect(second.exitCode, second.log).toBe(0);
    expect(Object.values(outcomes(second)).filter((o) => o !== "unchanged")).toEqual([]);
    expect(await sh("systemctl show -P ExecMainStartTimestampMonotonic tmux-persist-restore.service")).toBe("0");
    // From here on the test saves by hand: a save at a 5-minute mark would race it.
    await sh("systemctl stop tmux-persist-save.timer");
  });

  it("saves each session started by the launcher with its own --session-id; no pool-like name; a guess with two candidates abstains", async () => {
    await asAlice("tmux new-session -d -s work -c /home/alice/code '~/start-claude.sh'");
    await asAlice("tmux new-session -d -s notes -c /tmp '~/start-claude.sh'");
    // Not names anyone can address: never saved.
    await asAlice("tmux new-session -d -s 'a b' -c /tmp '~/start-claude.sh'");
    await asAlice(`tmux new-session -d -s ${"x".repeat(33)} -c /tmp`);
    // claude started without an id, two transcripts touched since: which is its own is a guess, so none.
    await asAlice("mkdir -p /home/alice/guess");
    await asAlice(`tmux new-session -d -s guess -c /home/alice/guess 'TRANSCRIPTS="${TWO[0]}: ${TWO[1]}:" claude'`);
    await callsReach(4);
    const started = await calls();
    const idOf = (name: string) => sessionIdOf(started.find((c) => c.args.includes(`--name ${name} `))!.args);
    const work = idOf("work");
    const notes = idOf("notes");
    expect(work).toMatch(UUID);
    expect(notes).toMatch(UUID);
    expect(work).not.toBe(notes);

    const run = await save();
    expect(run.exitCode, await journal("tmux-persist-save.service")).toBe(0);
    expect(await rows()).toEqual([
      { name: "guess", dir: "/home/alice/guess", uuid: "-" },
      // The launcher lands in ~/code.
      { name: "notes", dir: "/home/alice/code", uuid: notes },
      { name: "work", dir: "/home/alice/code", uuid: work },
    ]);
    const newest = (await snapshots()).at(-1)!;
    expect(await snapshots()).toEqual(["20260701T120000.tsv", newest]);
    expect(await vm.stat(SAVED)).toMatchObject({ type: "symlink", linkTarget: `snapshots/alice/${newest}` });
    expect(await vm.stat(`${SNAPSHOTS}/${newest}`)).toEqual({
      type: "file",
      mode: "0600",
      owner: "root",
      group: "root",
    });
    // bob is not mapped: nothing was saved of his but his migrated old save.
    expect(await sh(`ls -A ${STATE}/snapshots/bob`)).toBe("20260630T080000.tsv");
  });

  it("keeps the last save byte for byte when the user has no tmux server", async () => {
    const before = await sh(`ls -l --time-style=+%s ${SNAPSHOTS}; sha256sum ${SAVED}`);
    await asAlice("tmux kill-server");
    expect(await hasServer()).toBe(false);
    const run = await save();
    expect(run.exitCode, await journal("tmux-persist-save.service")).toBe(0);
    expect(await sh(`ls -l --time-style=+%s ${SNAPSHOTS}; sha256sum ${SAVED}`)).toBe(before);
    expect(await journal("tmux-persist-save.service")).toContain("alice has no tmux server; the last save is kept");
  });

  it("restores each session in its folder resuming its own conversation, in a tmux server that outlives the service", async () => {
    const saved = Object.fromEntries((await rows()).map((r) => [r.name, r.uuid]));
    const before = (await calls()).length;
    const run = await restore();
    expect(run.exitCode, await journal("tmux-persist-restore.service")).toBe(0);
    await callsReach(before + 3);
    expect(await sessionNames()).toEqual(["guess", "notes", "work"]);
    const restored = (await calls()).slice(before);
    expect(restored.map((c) => c.args).sort()).toEqual([
      // No conversation saved: a new one, as a new pane would start.
      expect.stringMatching(/^--dangerously-skip-permissions --name guess --session-id \S+$/),
      `--dangerously-skip-permissions --name notes --resume ${saved.notes}`,
      `--dangerously-skip-permissions --name work --resume ${saved.work}`,
    ]);
    // The oneshot has ended and its processes with it; the server lives in a scope of alice's slice.
    expect(await sh("systemctl is-active tmux-persist-restore.service || true")).toBe("inactive");
    const uid = await sh("id -u alice");
    expect(await sh(`grep '^0::' /proc/$(runuser -u alice -- tmux display-message -p '#{pid}')/cgroup`)).toMatch(
      new RegExp(`/user\\.slice/user-${uid}\\.slice/run-[^/]+\\.scope$`),
    );
    // A resumed claude that has not written its transcript yet: the id is still saved, from its arguments.
    expect((await save()).exitCode, await journal("tmux-persist-save.service")).toBe(0);
    expect(await rows()).toEqual([
      expect.objectContaining({ name: "guess" }),
      { name: "notes", dir: "/home/alice/code", uuid: saved.notes },
      { name: "work", dir: "/home/alice/code", uuid: saved.work },
    ]);
  });

  it("writes a snapshot only for a save that finds a change: three saves with one change leave two, and history lists them", async () => {
    const before = await snapshots();
    await asAlice("tmux new-session -d -s extra -c /tmp");
    for (const step of ["save", "save", "change", "save"]) {
      if (step === "change") await asAlice("tmux kill-session -t =extra");
      else expect((await save()).exitCode, await journal("tmux-persist-save.service")).toBe(0);
    }
    const added = (await snapshots()).filter((s) => !before.includes(s));
    expect(added).toHaveLength(2);
    expect(await journal("tmux-persist-save.service")).toMatch(
      /alice: 4 sessions, as in snapshot \d{8}T\d{6}; nothing written/,
    );
    const history = await tmuxPersist("history alice");
    expect(history.exitCode, history.stderr).toBe(0);
    const lines = history.stdout.trim().split("\n");
    expect(lines[0]).toBe(`alice: ${before.length + 2} snapshots, newest first (restore reads the newest):`);
    expect(lines[1]).toBe(`  ${added[1]!.slice(0, -4)}  3 sessions: guess notes work`);
    expect(lines[2]).toBe(`  ${added[0]!.slice(0, -4)}  4 sessions: extra guess notes work`);
    expect(lines.at(-1)).toBe("  20260701T120000  1 session: old");
  });

  it("restore-one brings back one session alone, from the newest snapshot that has it; after forget, restore skips it", async () => {
    await asAlice("tmux kill-server");
    const before = (await calls()).length;
    const one = await tmuxPersist("restore-one alice extra");
    expect(one.exitCode, one.stderr).toBe(0);
    expect(one.stdout).toContain("alice: extra recreated in /tmp");
    expect(await sessionNames()).toEqual(["extra"]);
    await callsReach(before + 1);
    // The old save's session, from the migrated snapshot: its conversation resumed.
    expect((await tmuxPersist("restore-one alice old")).exitCode).toBe(0);
    await callsReach(before + 2);
    expect((await calls()).at(-1)?.args).toBe(`--dangerously-skip-permissions --name old --resume ${OLD_CONVERSATION}`);
    expect((await tmuxPersist("restore-one alice nowhere")).stderr).toContain(
      "no snapshot of alice has a session nowhere",
    );

    await asAlice("tmux kill-server");
    const forget = await tmuxPersist("forget alice work");
    expect(forget.exitCode, forget.stderr).toBe(0);
    expect((await tmuxPersist("history alice")).stdout).toMatch(
      /forgotten \(restore skips them\):\n {2}work {2}since \d{8}T\d{6}\n$/,
    );
    const run = await restore();
    expect(run.exitCode, await journal("tmux-persist-restore.service")).toBe(0);
    expect(await sessionNames()).toEqual(["guess", "notes"]);
    expect(await journal("tmux-persist-restore.service")).toContain(
      "alice: work was forgotten (tmux-persist forget), not restored",
    );

    // A session of that name made afterwards is a new one: saved, and restored again.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await asAlice("tmux new-session -d -s work -c /var/tmp");
    expect((await save()).exitCode, await journal("tmux-persist-save.service")).toBe(0);
    expect((await tmuxPersist("history alice")).stdout).not.toContain("forgotten");
  });

  it("never touches a session that exists, and recreates the ones missing", async () => {
    const pane = await asAlice("tmux display-message -p -t =work: '#{pane_pid} #{session_created}'");
    await asAlice("tmux kill-session -t =notes");
    const run = await restore();
    expect(run.exitCode, await journal("tmux-persist-restore.service")).toBe(0);
    expect(await sessions()).toEqual(["guess /home/alice/code", "notes /home/alice/code", "work /var/tmp"]);
    expect(await asAlice("tmux display-message -p -t =work: '#{pane_pid} #{session_created}'")).toBe(pane);
    expect(await journal("tmux-persist-restore.service")).toContain("alice: work exists, left as it is");
  });
});
