// tmux-persist on a booted box of the test release (systemd as PID 1), installed by the
// builder's stages service-helpers and units: a mapped user's tmux sessions
// and the Claude conversation running in one of them are saved, her tmux
// server goes away, and restore brings the sessions back in their folders
// with `claude --resume` through the launcher. Checked from outside.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { buildIn, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";

const STAGES = "service-helpers,units";
const CONVERSATION = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
const SAVED = "/var/lib/tmux-persist/alice.tsv";
// Stands in for claude (on PATH where the claude-code stage puts it): records
// its arguments and, started in ~/code, holds the transcript of its
// conversation open as claude does. A resumed one does not (yet): save then
// finds the id on its command line.
const CLAUDE_STAND_IN = `#!/bin/sh
echo "[$*]" >> "$HOME/claude-argv.log"
case " $* " in
*" --resume "*) ;;
*) if [ "$PWD" = "$HOME/code" ]; then
  mkdir -p "$HOME/.claude/projects/-home-alice-code" && exec 3>>"$HOME/.claude/projects/-home-alice-code/${CONVERSATION}.jsonl"
fi ;;
esac
sleep infinity
`;
// The launcher's contract that restore relies on: its arguments go on to claude.
const LAUNCHER = `#!/bin/sh\nexec claude "$@"\n`;

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
  const hasServer = async () => (await vm.exec("runuser -u alice -- tmux list-sessions")).exitCode === 0;
  /** The saved records, each as its key=value fields. */
  const saved = async () =>
    (await vm.readFile(SAVED))
      .split("\n")
      .filter((line) => line && !line.startsWith("#"))
      .map((line) =>
        Object.fromEntries(line.split("\t").map((field) => [field.split("=")[0], field.slice(field.indexOf("=") + 1)])),
      )
      .sort((a, b) => String(a.session).localeCompare(String(b.session)));
  const argvLog = async () => (await vm.exec("cat /home/alice/claude-argv.log")).stdout.trim().split("\n");
  const until = async (what: string, done: () => Promise<boolean>) => {
    for (let i = 0; i < 100; i++) {
      if (await done()) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const save = () => vm.exec("systemctl start tmux-persist-save.service");
  const restore = () => vm.exec("systemctl start tmux-persist-restore.service");
  const journal = (unit: string) => sh(`journalctl -u ${unit} -o cat --no-pager | tail -20`);

  beforeAll(async () => {
    vm = await startFreshVm();
    const t0 = Date.now();
    await vm.exec("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux", { check: true });
    process.stderr.write(`apt-get install tmux: ${Date.now() - t0} ms\n`);
    // The units stage verifies the timers' services, which run the pinned node.
    await vm.exec(`ln -s ${NODE_IN_CONTAINER} /usr/local/bin/node`, { check: true });
    first = await build();
    await vm.exec(["sh", "-c", 'printf %s "$CLAUDE" > /usr/local/bin/claude && chmod 755 /usr/local/bin/claude'], {
      check: true,
      env: { CLAUDE: CLAUDE_STAND_IN },
    });
    await vm.exec(
      "useradd -m -s /bin/bash alice && useradd -m bob && printf '# generated\\n# do not edit\\nalice.moreau=alice\\n' > /etc/ttyd-user-map && " +
        `runuser -u alice -- sh -c 'mkdir ~/code && printf %s "$LAUNCHER" > ~/start-claude.sh && chmod 755 ~/start-claude.sh'`,
      { check: true, env: { LAUNCHER } },
    );
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("installs the program, enables and starts the save timer, and only enables restore", async () => {
    expect(first.exitCode, first.log).toBe(0);
    expect(outcomes(first)).toMatchObject({ "service-helpers": "changed", units: "changed" });
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

    const second = await build();
    expect(second.exitCode, second.log).toBe(0);
    expect(Object.values(outcomes(second)).filter((o) => o !== "unchanged")).toEqual([]);
    expect(await sh("systemctl show -P ExecMainStartTimestampMonotonic tmux-persist-restore.service")).toBe("0");
    // From here on the test saves by hand: a save at a 5-minute mark would race it.
    await sh("systemctl stop tmux-persist-save.timer");
  });

  it("saves each session with its folder and the conversation of the claude in it", async () => {
    await asAlice("tmux new-session -d -s work -c /home/alice/code '~/start-claude.sh'");
    await asAlice("tmux new-session -d -s shell -c /tmp");
    await until(
      "claude's transcript",
      async () =>
        (await vm.exec(`test -e /home/alice/.claude/projects/-home-alice-code/${CONVERSATION}.jsonl`)).exitCode === 0,
    );
    const run = await save();
    expect(run.exitCode, await journal("tmux-persist-save.service")).toBe(0);
    expect(await vm.stat("/var/lib/tmux-persist")).toEqual({
      type: "directory",
      mode: "0700",
      owner: "root",
      group: "root",
    });
    expect(await vm.stat(SAVED)).toEqual({ type: "file", mode: "0600", owner: "root", group: "root" });
    expect(await saved()).toEqual([
      { session: "shell", path: "/tmp", claude: "" },
      { session: "work", path: "/home/alice/code", claude: CONVERSATION },
    ]);
    // bob is not mapped; no one else was saved.
    expect(await sh("ls -A /var/lib/tmux-persist")).toBe("alice.tsv");
  });

  it("keeps the last save byte for byte when the user has no tmux server", async () => {
    const before = await sh(`sha256sum ${SAVED}; stat -c %Y ${SAVED}`);
    await asAlice("tmux kill-server");
    expect(await hasServer()).toBe(false);
    const run = await save();
    expect(run.exitCode, await journal("tmux-persist-save.service")).toBe(0);
    expect(await sh(`sha256sum ${SAVED}; stat -c %Y ${SAVED}`)).toBe(before);
    expect(await journal("tmux-persist-save.service")).toContain("alice has no tmux server; the last save is kept");
  });

  it("restores the sessions in their folders, resuming the conversation through the launcher, in a tmux server that outlives the service", async () => {
    const started = (await argvLog()).length;
    const run = await restore();
    expect(run.exitCode, await journal("tmux-persist-restore.service")).toBe(0);
    await until("both claudes", async () => (await argvLog()).length === started + 2);
    expect(await sessions()).toEqual(["shell /tmp", "work /home/alice/code"]);
    expect((await argvLog()).slice(started).sort()).toEqual(["[--resume " + CONVERSATION + "]", "[]"]);
    // The oneshot has ended and its processes with it; the server lives in a scope of alice's slice.
    expect(await sh("systemctl is-active tmux-persist-restore.service || true")).toBe("inactive");
    const uid = await sh("id -u alice");
    expect(await sh(`grep '^0::' /proc/$(runuser -u alice -- tmux display-message -p '#{pid}')/cgroup`)).toMatch(
      new RegExp(`/user\\.slice/user-${uid}\\.slice/run-[^/]+\\.scope$`),
    );

    // A resumed claude that has not written its transcript yet: the id is still saved, from its arguments.
    expect((await save()).exitCode).toBe(0);
    expect(await saved()).toEqual([
      { session: "shell", path: "/tmp", claude: "" },
      { session: "work", path: "/home/alice/code", claude: CONVERSATION },
    ]);
  });

  it("never touches a session that exists, and recreates the ones missing", async () => {
    await asAlice("tmux kill-server");
    await asAlice("tmux new-session -d -s work -c /var/tmp");
    const pane = await asAlice("tmux display-message -p -t =work '#{pane_pid} #{session_created}'");
    const started = (await argvLog()).length;
    const run = await restore();
    expect(run.exitCode, await journal("tmux-persist-restore.service")).toBe(0);
    await until("the restored shell session's claude", async () => (await argvLog()).length === started + 1);
    expect(await sessions()).toEqual(["shell /tmp", "work /var/tmp"]);
    expect(await asAlice("tmux display-message -p -t =work '#{pane_pid} #{session_created}'")).toBe(pane);
    expect((await argvLog()).slice(started)).toEqual(["[]"]);
    expect(await journal("tmux-persist-restore.service")).toContain("alice: work exists, left as it is");
  });
});
