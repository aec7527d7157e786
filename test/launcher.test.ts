// The launcher and tmux setup that /etc/skel gives every new user, proven by
// running them on a built devvm of the test release: a user the builder made from
// skel, inside tmux, with a stand-in claude that records
// how it was called. The launcher's clones: one clean master behind its
// remote, one with an uncommitted change, one on another branch and one whose
// remote accepts the connection and never answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pins } from "../lib/inputs/pins.ts";
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import { PROJECT_PINS } from "./support/stand-ins/sources.ts";
import { NODE_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer, ExecResult } from "./support/harness/devvm-container.ts";
import { buildIn } from "./support/harness/build-in-vm.ts";
import { startBuiltBox } from "./support/harness/built-box.ts";
import {
  CALLS,
  CLAUDE_STAND_IN,
  EXIT_CODE,
  FETCH_CAP_MS,
  hex,
  HOLD,
  REPOS,
  setUpRepos,
  SILENT_REMOTE,
  STAND_IN_DIR,
  waitFor,
} from "./support/harness/launcher-scene.ts";

/** How the launcher starts a new conversation in the session "work": named after it, with an id of its own. */
const NEW_CONVERSATION =
  /^--dangerously-skip-permissions --name work --session-id [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Call {
  at: number;
  cwd: string;
  args: string;
  /** Its cgroup (the unified hierarchy's line of /proc/self/cgroup). */
  cgroup: string;
}

describe("the launcher and tmux, as a user made from /etc/skel", () => {
  let vm: DevvmContainer;
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  // alice's own environment, as a login through the web terminal gives it.
  const asAlice = (command: string): Promise<ExecResult> =>
    vm.exec([
      "runuser",
      "-u",
      "alice",
      "--",
      "env",
      "-i",
      "HOME=/home/alice",
      "USER=alice",
      "LOGNAME=alice",
      "SHELL=/bin/zsh",
      "PATH=/usr/local/bin:/usr/bin:/bin",
      "LANG=C.UTF-8",
      "bash",
      "-c",
      `cd ~ && ${command}`,
    ]);
  const alice = async (command: string) => {
    const run = await asAlice(command);
    if (run.exitCode !== 0) throw new Error(`as alice: ${command}: exit ${run.exitCode}\n${run.stderr}${run.stdout}`);
    return run.stdout.trim();
  };
  const calls = async (): Promise<Call[]> =>
    (await vm.exec(["cat", CALLS])).stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [at, cwd, args, cgroup] = line.split("\t");
        return { at: Number(at) * 1000, cwd: cwd!, args: args ?? "", cgroup: cgroup ?? "" };
      });
  const waitForCall = (count: number) =>
    waitFor(`claude call number ${count}`, async () => (await calls())[count - 1], FETCH_CAP_MS + 20_000);
  /** Every pane of the session "work": id, dead (0/1), command. */
  const panes = async () =>
    (await alice("tmux list-panes -s -t work -F '#{pane_id} #{pane_dead} #{pane_current_command}'"))
      .split("\n")
      .map((l) => l.split(" "));
  const rev = (repo: string, ref: string) => alice(`git -C ~/code/${repo} rev-parse ${ref}`);
  const remoteMaster = (repo: string) => alice(`git --git-dir ~/remotes/${repo}.git rev-parse master`);
  let before: Record<string, string>;

  beforeAll(async () => {
    // A built devvm: tmux, git and zsh installed, and alice made from /etc/skel by the users stage, with zsh.
    vm = await startBuiltBox();
    // Its timers would run builds and tmux-persist of their own amid the test's.
    await sh("systemctl stop devvm-reconcile.timer devvm-t3-pin.timer tmux-persist-save.timer");
    const skel = await buildIn(vm, {}, "--stage", "skel");
    expect(skel.exitCode, skel.log).toBe(0);
    // The stand-in in claude's place: the link to the real one goes first.
    await vm.exec(
      [
        "sh",
        "-c",
        `rm /usr/local/bin/claude && printf %s "$CLAUDE" > /usr/local/bin/claude && chmod 755 /usr/local/bin/claude && install -d -m 0777 ${STAND_IN_DIR} /tmp/silent-remote`,
      ],
      { check: true, env: { CLAUDE: CLAUDE_STAND_IN } },
    );
    await vm.exec(["systemd-run", "--unit=silent-remote", NODE_IN_CONTAINER, "-e", SILENT_REMOTE], { check: true });
    const port = await waitFor(
      "the silent remote's port",
      async () => (await vm.exec("cat /tmp/silent-remote/port")).stdout.trim() || undefined,
      10_000,
    );
    await alice(setUpRepos(port));
    before = Object.fromEntries(await Promise.all(REPOS.map(async (r) => [r, await rev(r, "master")] as const)));
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("gets the launcher and .tmux.conf from skel, and the release's tmux loads the file without an error", async () => {
    expect(await vm.stat("/home/alice/start-claude.sh")).toMatchObject({ type: "file", mode: "0755", owner: "alice" });
    expect(await vm.stat("/home/alice/.tmux.conf")).toMatchObject({ type: "file", mode: "0644", owner: "alice" });
    // The tmux of the test release's pin (3.5a-3 on Debian 13: `tmux 3.5a`).
    expect(await alice("tmux -V")).toBe(
      `tmux ${PROJECT_PINS.apt[TEST_RELEASE as keyof Pins["apt"]]!.tmux!.replace(/-[^-]*$/, "")}`,
    );
    // start-server ignores errors in the file; source-file reports them.
    const load = await asAlice(
      "tmux -L check -f /dev/null new-session -d 'sleep 60' \\; source-file ~/.tmux.conf; echo \"exit $?\"; tmux -L check kill-server",
    );
    expect(load.stderr).toBe("");
    expect(load.stdout.trim()).toBe("exit 0");
  });

  it("starts Claude in ~/code named after the tmux session, with the permission flag and no --model, within one fetch cap", async () => {
    await sh(`echo 0 > ${EXIT_CODE} && touch ${HOLD}`);
    // The container's clock, read just before the session starts (the same
    // clock the stand-in writes), so polling adds nothing to the measure.
    const startedAt = Number(await alice("date +%s.%N && tmux new-session -d -s work -x 100 -y 30")) * 1000;
    const call = await waitForCall(1);
    expect(call.args).toMatch(NEW_CONVERSATION);
    expect(call.args).not.toMatch(/--model/);
    expect(call.cwd).toBe("/home/alice/code");
    // One silent remote costs the cap, not more (slack for a loaded host),
    // and the cap was really reached: the remote took the fetch's connection.
    const elapsed = call.at - startedAt;
    process.stderr.write(`launcher to claude with one silent remote: ${Math.round(elapsed)} ms\n`);
    expect(elapsed).toBeGreaterThanOrEqual(FETCH_CAP_MS - 500);
    expect(elapsed).toBeLessThan(FETCH_CAP_MS + 5_000);
    expect(await sh("cat /tmp/silent-remote/connections")).toContain("connection");

    const screen = await alice("tmux capture-pane -p -t work");
    expect(screen).toContain('Hello alice. Starting Claude Code for session "work".');
    expect(screen).toContain("~/code/offline: could not fetch (offline, or slower than 10s)");
    expect(screen).toContain("stand-in claude is running");
    expect(await panes()).toEqual([[expect.any(String), "0", "claude"]]);
  });

  it("fast-forwards the checked-out branch, whichever it is, only when clean with an upstream, and fetches everywhere", async () => {
    expect(await rev("clean", "HEAD")).toBe(await remoteMaster("clean"));
    expect(await rev("clean", "HEAD")).not.toBe(before.clean);
    // A branch other than master, with an upstream: fast-forwarded; master, not checked out, stays.
    expect(await alice("git -C ~/code/branch symbolic-ref --short HEAD")).toBe("feature");
    expect(await rev("branch", "feature")).toBe(await alice("git --git-dir ~/remotes/branch.git rev-parse feature"));
    expect(await rev("branch", "feature")).not.toBe(before.branch);
    expect(await rev("branch", "master")).toBe(before.branch);
    expect(await rev("branch", "origin/master")).toBe(await remoteMaster("branch"));
    // The dirty clone and the one on a branch without an upstream fetched, and stayed put.
    expect(await rev("dirty", "HEAD")).toBe(before.dirty);
    expect(await rev("dirty", "origin/master")).toBe(await remoteMaster("dirty"));
    expect(await alice("git -C ~/code/dirty status --porcelain")).toBe("M b");
    expect(await alice("git -C ~/code/local symbolic-ref --short HEAD")).toBe("mine");
    expect(await rev("local", "HEAD")).toBe(before.local);
    expect(await rev("local", "origin/master")).toBe(await remoteMaster("local"));
    expect(await rev("offline", "HEAD")).toBe(before.offline);
  });

  it("runs the launcher in every new pane, and reloading ~/.tmux.conf reports nothing", async () => {
    // From here on the offline remote refuses at once, so launches are quick.
    await sh("systemctl stop silent-remote.service");
    await alice("tmux split-window -t work");
    expect((await waitForCall(2)).args).toMatch(NEW_CONVERSATION);
    await waitFor(
      "two panes running claude",
      async () => (await panes()).every(([, , cmd]) => cmd === "claude") && (await panes()).length === 2,
    );
    const reload = await asAlice("tmux source-file ~/.tmux.conf");
    expect([reload.exitCode, reload.stderr]).toEqual([0, ""]);
    expect(await alice("tmux show -gv base-index")).toBe("1");
    expect(await alice("tmux list-panes -t work -F '#{pane_index}'")).toBe("1\n2");
  });

  it("opens the menu from [+] and from a right-click, and it stays open: New Claude, close with confirmation, detach", async () => {
    // A real client: an outer tmux whose pane runs `tmux attach`, fed mouse
    // events as the terminal would send them (SGR mouse reports).
    const outer = (command: string) => alice(`tmux -L outer ${command}`);
    const mouse = (button: number, x: number, y: number, up: boolean) =>
      outer(`send-keys -t o -H ${hex(`\x1b[<${button};${x};${y}${up ? "m" : "M"}`)}`);
    const screen = () => outer("capture-pane -p -t o");
    // Window indexes, and what runs in window 2 once it is not Claude.
    const windows = async () =>
      (await alice("tmux list-windows -t work -F '#{window_index}#{?#{==:#{pane_current_command},zsh}, zsh,}'"))
        .split("\n")
        .join(" ");
    const shows = (text: string, timeoutMs?: number) =>
      waitFor(`"${text}" on the screen`, async () => (await screen()).includes(text), timeoutMs, screen);
    // A click as a person makes it: the button goes up after the menu is
    // drawn, and the menu must survive that.
    const openMenu = async (button: number, x: number, y: number) => {
      await mouse(button, x, y, false);
      await shows("New Claude");
      await mouse(button, x, y, true);
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (const item of [
        "New Claude",
        "Split right",
        "Split below",
        "Shell (zsh)",
        "Close pane",
        "Close window",
        "Detach",
      ])
        expect(await screen()).toContain(item);
    };
    await outer(
      "-f /dev/null new-session -d -s o -x 100 -y 30 'env -u TMUX TERM=xterm-256color tmux attach -t work' \\; set -g status off",
    );
    await waitFor(
      "the client's status line with [+]",
      async () => /^\[\+\] \[work\]/m.test(await screen()),
      undefined,
      screen,
    );

    // [+] is the first three columns of the status line (the bottom row).
    await openMenu(0, 2, 30);
    await outer("send-keys -t o c");
    expect((await waitForCall(3)).args).toMatch(NEW_CONVERSATION);
    expect(await windows()).toBe("1 2");

    // A click on the session name is not the button.
    await mouse(0, 7, 30, false);
    await mouse(0, 7, 30, true);
    await expect(shows("New Claude", 1_500)).rejects.toThrow(/timed out/);

    // Right-click in the new window's pane: close it, after a yes.
    await openMenu(2, 10, 5);
    await outer("send-keys -t o x");
    await shows("Close this pane? (y/n)");
    await outer("send-keys -t o y");
    await waitFor("window 2 gone", async () => (await windows()) === "1");

    // A shell window, closed whole from the menu, after a yes.
    await openMenu(0, 2, 30);
    await outer("send-keys -t o s");
    await waitFor("a zsh window", async () => (await windows()) === "1 2 zsh");
    await openMenu(2, 10, 5);
    await outer("send-keys -t o X");
    await shows("Close this window and all its panes? (y/n)");
    await outer("send-keys -t o y");
    await waitFor("window 2 gone", async () => (await windows()) === "1");

    // Split right: side by side with the pane it came from, running the launcher.
    await openMenu(0, 2, 30);
    await outer("send-keys -t o '|'");
    expect((await waitForCall(4)).args).toMatch(NEW_CONVERSATION);
    expect(await alice("tmux list-panes -t work:1 -F '#{pane_index}'")).toBe("1\n2\n3");

    await openMenu(0, 2, 30);
    await outer("send-keys -t o d");
    await waitFor("no client attached", async () => (await alice("tmux list-clients")) === "");
  });

  it("leaves a shell in the pane, with a note, when Claude exits abnormally", async () => {
    await sh(`echo 3 > ${EXIT_CODE} && rm ${HOLD}`);
    const shells = await waitFor("every pane at a shell", async () => {
      const now = await panes();
      return now.every(([, dead, cmd]) => dead === "0" && cmd === "zsh") ? now : undefined;
    });
    expect(shells).toHaveLength(3);
    for (const [pane] of shells) {
      const screen = await alice(`tmux capture-pane -p -J -t ${pane}`);
      expect(screen).toContain("start-claude: claude exited with status 3. This is a shell in /home/alice/code;");
      expect(screen).toContain("run ~/start-claude.sh to start Claude again");
    }
  });

  it("closes the window when Claude exits cleanly", async () => {
    await sh(`echo 0 > ${EXIT_CODE}`);
    const count = (await calls()).length;
    const window = await alice("tmux new-window -t work -P -F '#{window_id}'");
    await waitForCall(count + 1);
    await waitFor(
      `window ${window} closed`,
      async () => !(await alice("tmux list-windows -t work -F '#{window_id}'")).split("\n").includes(window),
    );
    expect(await panes()).toHaveLength(3);
  });

  it("gives every conversation an id of its own, and sets hasCompletedOnboarding in ~/.claude.json only when missing", async () => {
    const ids = (await calls()).map((c) => /--session-id (\S+)$/.exec(c.args)?.[1]);
    expect(ids.length).toBeGreaterThanOrEqual(5);
    expect(new Set(ids).size).toBe(ids.length);

    // Each state of the file, then a new window: the launcher runs before Claude (which exits at once here).
    const config = "/home/alice/.claude.json";
    const launchWith = async (text: string | null) => {
      await alice(text === null ? `rm -f ${config}` : `printf %s '${text}' > ${config} && chmod 600 ${config}`);
      const count = (await calls()).length;
      await alice("tmux new-window -t work");
      await waitForCall(count + 1);
      return (await vm.exec(["cat", config])).stdout;
    };
    const kept = '{\n  "theme": "dark",\n  "numStartups": 3\n}';
    expect(JSON.parse(await launchWith(kept))).toEqual({ theme: "dark", numStartups: 3, hasCompletedOnboarding: true });
    expect(await vm.stat(config)).toMatchObject({ type: "file", mode: "0600", owner: "alice" });
    // Set, even to false, is the user's (or Claude's) choice.
    expect(await launchWith('{"hasCompletedOnboarding":false}')).toBe('{"hasCompletedOnboarding":false}');
    // Corrupt or empty: left to Claude, byte for byte.
    expect(await launchWith('{"theme": "da')).toBe('{"theme": "da');
    expect(await launchWith("")).toBe("");
    // Absent, with no backup to restore it from: made with the flag alone, hers.
    expect(JSON.parse(await launchWith(null))).toEqual({ hasCompletedOnboarding: true });
    expect(await vm.stat(config)).toMatchObject({ type: "file", mode: "0600", owner: "alice", group: "alice" });
    expect(await alice("ls -a ~ | grep -c claude.json")).toBe("1");
  });

  // Last: alice's manager keeps running from here on.
  it("starts Claude in a scope of alice's own systemd manager, where the pane cap reaches, when tmux made the pane none", async () => {
    // Before: no manager of alice's runs, and Claude ran in the pane's cgroup, as it always did.
    expect((await calls())[0]!.cgroup).not.toMatch(/user@/);
    // The release's tmux cannot reach her manager without a user bus (none on this box), so it makes no
    // scope here, as Debian 12's tmux 3.3a never does: the launcher makes one when her manager runs.
    await sh("loginctl enable-linger alice");
    const uid = await alice("id -u");
    await waitFor("alice's systemd manager", async () =>
      (await vm.exec(`test -S /run/user/${uid}/systemd/private`)).exitCode === 0 ? true : undefined,
    );
    await sh(`echo 0 > ${EXIT_CODE} && touch ${HOLD}`);
    const count = (await calls()).length;
    await alice("tmux new-window -t work");
    const call = await waitForCall(count + 1);
    expect(call.args).toMatch(NEW_CONVERSATION);
    expect(call.cgroup).toMatch(
      new RegExp(`/user\\.slice/user-${uid}\\.slice/user@${uid}\\.service/.*run-[^/]+\\.scope$`),
    );
    // Claude is that scope's process: the unit systemd made for it runs it.
    const unit = call.cgroup.split("/").pop()!;
    expect(await alice(`XDG_RUNTIME_DIR=/run/user/${uid} systemctl --user show -P ActiveState ${unit}`)).toBe("active");
    await sh(`rm -f ${HOLD}`);
  });
});
