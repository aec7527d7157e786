// Containment on a built devvm (docs/devvm.md "Containment: one user cannot
// take the box down"), checked from outside: a runaway in one of alice's
// tmux panes and a runaway child of her t3 server are killed at their caps,
// while the pane's shell, her other panes, her server and everything of
// bob's live on; systemctl shows each unit, slice and scope the properties
// DEVVM.md names; earlyoom runs with exactly its configured arguments.
//
// The caps are set small through the admin's own settings
// (DEVVM_USER_MEMORY_MAX=128M, DEVVM_PANE_MEMORY_MAX=64M), and each runaway
// allocates 400 MB at most, so nothing here can fill the host's memory, and
// earlyoom (which reads the host's /proc/meminfo) never acts.
//
// What a box can show depends on the host's cgroups. Under cgroup v2 the
// kernel enforces every cap, the pane's included. This machine's are v1
// (hybrid): there only the system's manager holds the memory controller, so
// the caps of units and slices are enforced (a runaway in a pane is killed
// at the cap of the user's slice), while a scope of a user's own manager
// (the pane cap) and MemorySwapMax= and OOMPolicy= are checked as the
// configuration systemd shows. The test says which it saw.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PANE_SCOPE_DROP_IN } from "../stages/containment.ts";
import { buildIn, type BuildRun } from "./support/harness/build-in-vm.ts";
import { BUILT_BOX_INPUTS, startBuiltBox } from "./support/harness/built-box.ts";
import { NODE_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { CALLS, CLAUDE_STAND_IN, HOLD, STAND_IN_DIR, waitFor } from "./support/harness/launcher-scene.ts";

const CAPS = { DEVVM_USER_MEMORY_MAX: "128M", DEVVM_PANE_MEMORY_MAX: "64M" };
const USER_CAP = 128 * 1024 ** 2;
const PANE_CAP = 64 * 1024 ** 2;
// Allocates 400 MB unless killed first: tail holds one endless line in memory.
const RUNAWAY = "head -c 400M /dev/zero | tail";
const SCENE = "/tmp/containment";
// A pane's shell that runs the runaway once told to, notes how it ended, and lives on.
const RUNAWAY_PANE = `bash -c 'while [ ! -e ${SCENE}/go ]; do sleep 0.1; done; ${RUNAWAY}; echo $? > ${SCENE}/pane-exit; while :; do sleep 1; done'`;
const EARLYOOM_ARGS = [
  "-m",
  "5,3",
  "-s",
  "100,100",
  "-r",
  "3600",
  "--avoid",
  "^(systemd|systemd-.*|sshd|dockerd|containerd|init|t3-dispatch|tmux.*)$",
  "--prefer",
  "^(python3|node|chrome|chromium|ugrep|rg|go|[0-9]+[.][0-9]+[.][0-9]+)$",
];

describe("containment on a built devvm", () => {
  let vm: DevvmContainer;
  let capsBuild: BuildRun;
  let cgroupV1: boolean;
  const uid: Record<string, string> = {};
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const build = async (...args: string[]): Promise<BuildRun> => {
    const started = Date.now();
    const run = await buildIn(vm, CAPS, "--inputs", BUILT_BOX_INPUTS, ...args);
    process.stderr.write(`build ${args.join(" ")}: exit ${run.exitCode} in ${Date.now() - started} ms\n`);
    return run;
  };
  /** What a login gives USER (XDG_RUNTIME_DIR: tmux 3.4 reaches the user's manager through it). */
  const login = (user: string) => [
    "env",
    "-i",
    `HOME=/home/${user}`,
    `USER=${user}`,
    `LOGNAME=${user}`,
    "SHELL=/bin/zsh",
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    `XDG_RUNTIME_DIR=/run/user/${uid[user]}`,
  ];
  /** A tmux command as USER. */
  const tmux = async (user: string, ...args: string[]) =>
    (await vm.exec(["runuser", "-u", user, "--", ...login(user), "tmux", ...args], { check: true })).stdout.trim();
  /** USER's tmux server, started in USER's slice as a login (or tmux-persist's restore) starts it; its first window. */
  const startTmux = (user: string, window: string, ...command: string[]) =>
    vm.exec(
      [
        "systemd-run",
        "--quiet",
        "--scope",
        "--collect",
        `--slice=user-${uid[user]}.slice`,
        "--",
        "setpriv",
        `--reuid=${user}`,
        `--regid=${user}`,
        "--init-groups",
        "--",
        ...login(user),
        "tmux",
        "new-session",
        "-d",
        "-s",
        "work",
        "-n",
        window,
        ...command,
      ],
      { check: true },
    );
  /** USER's panes: window name -> the pane's process. */
  const panes = async (user: string) =>
    Object.fromEntries(
      (await tmux(user, "list-panes", "-a", "-F", "#{window_name} #{pane_pid} #{pane_dead} #{pane_current_command}"))
        .split("\n")
        .map((line) => line.split(" "))
        .map(([name, pid, dead, command]) => [name!, { pid: pid!, dead: dead === "1", command: command! }]),
    );
  const alive = async (pid: string) => (await vm.exec(`kill -0 ${pid}`)).exitCode === 0;
  const show = async (unit: string, properties: string[], user?: string) =>
    Object.fromEntries(
      (
        await sh(
          `systemctl ${user ? `--user --machine=${user}@.host ` : ""}show ${properties.map((p) => `-p ${p}`).join(" ")} ${unit}`,
        )
      )
        .split("\n")
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
  /** The memory controller's folder of a unit's cgroup: v1's memory hierarchy, or v2's one tree. */
  const memoryDir = async (unit: string, user?: string) => {
    const group = (await show(unit, ["ControlGroup"], user)).ControlGroup;
    return cgroupV1 ? `/sys/fs/cgroup/memory${group}` : `/sys/fs/cgroup${group}`;
  };
  /** The cap the kernel enforces on a unit's cgroup now (bytes), as systemd wrote it there. */
  const enforced = async (unit: string) =>
    Number(await sh(`cat '${await memoryDir(unit)}/${cgroupV1 ? "memory.limit_in_bytes" : "memory.max"}'`));
  /** How often the kernel hit a unit's cap: v1's failcnt, v2's oom_kill events. */
  const capHits = async (unit: string, user?: string) => {
    const dir = await memoryDir(unit, user);
    return Number(
      cgroupV1
        ? await sh(`cat '${dir}/memory.failcnt'`)
        : await sh(`awk '$1 == "oom_kill" { print $2 }' '${dir}/memory.events'`),
    );
  };
  const portOf = (user: string) => sh(`sed -n 's/^T3_PORT=//p' /etc/t3-serve/${user}.env`);
  const fetchFrom = (user: string, path: string, body?: object) =>
    portOf(user).then((port) =>
      sh(
        `${NODE_IN_CONTAINER} -e 'fetch("http://127.0.0.1:${port}${path}"${body ? `, { method: "POST", body: ${JSON.stringify(JSON.stringify(body))} }` : ""}).then(async (r) => console.log(r.status, await r.text()))'`,
      ),
    );
  const t3State = (user: string) => show(`t3-serve@${user}.service`, ["MainPID", "NRestarts", "ActiveState"]);

  beforeAll(async () => {
    vm = await startBuiltBox();
    const started = Date.now();
    // Its timers would run builds and saves of their own amid the test's.
    await sh("systemctl stop devvm-reconcile.timer devvm-t3-pin.timer tmux-persist-save.timer");
    cgroupV1 = (await vm.exec("test -d /sys/fs/cgroup/memory")).exitCode === 0;
    for (const user of ["alice", "bob"]) uid[user] = await sh(`id -u ${user}`);
    // alice's own manager runs (she lingers, as a login would start it), with her bus: tmux 3.4 starts each
    // of her panes in a scope of that manager. Her launcher's Claude is a stand-in that records its cgroup.
    await vm.exec(
      [
        "sh",
        "-c",
        `loginctl enable-linger alice && rm /usr/local/bin/claude && printf %s "$CLAUDE" > /usr/local/bin/claude && chmod 755 /usr/local/bin/claude && install -d -m 0777 ${STAND_IN_DIR} ${SCENE} && touch ${HOLD}`,
      ],
      { check: true, env: { CLAUDE: CLAUDE_STAND_IN } },
    );
    await waitFor("alice's bus", async () => (await vm.exec(`test -S /run/user/${uid.alice}/bus`)).exitCode === 0);
    // Her panes are open before the caps change: the build must reach them. bob's pane just runs.
    await startTmux("alice", "claude");
    await tmux("alice", "new-window", "-d", "-t", "work", "-n", "runaway", RUNAWAY_PANE);
    await startTmux("bob", "bob", "exec sleep 100000");
    await waitFor(
      "claude in alice's first pane",
      async () => (await vm.exec(`test -s ${CALLS}`)).exitCode === 0,
      30_000,
    );
    capsBuild = await build("--stage", "containment,units,instances");
    process.stderr.write(`containment test: set up in ${Date.now() - started} ms (cgroup ${cgroupV1 ? "v1" : "v2"})\n`);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("takes the admin's caps: the drop-ins, t3-serve@ and the reload of alice's manager, which reaches her open panes", () => {
    expect(capsBuild.exitCode, capsBuild.log).toBe(0);
    const changes = (name: string) => {
      const stage = capsBuild.report.stages.find((s) => s.name === name);
      return stage && "changes" in stage
        ? stage.changes.map((c) => ("path" in c ? `${c.kind} ${c.path}` : "description" in c ? c.description : c.kind))
        : [];
    };
    expect(changes("containment")).toEqual([
      "content /etc/systemd/system/user-.slice.d/50-devvm-resource.conf",
      `content ${PANE_SCOPE_DROP_IN}`,
      "daemon-reload (the slices take their caps and weights)",
      "daemon-reload alice's systemd manager (alice's open panes take the pane cap)",
    ]);
    expect(changes("units")).toContain("content /etc/systemd/system/t3-serve@.service");
    expect(changes("instances")).toEqual(expect.arrayContaining(["restart t3-serve@alice.service"]));
  });

  it("gives each unit, slice and scope the properties DEVVM.md names, and the kernel the caps", async () => {
    expect(
      await show("t3-serve@alice.service", [
        "MemoryAccounting",
        "MemoryHigh",
        "MemoryMax",
        "MemorySwapMax",
        "OOMPolicy",
      ]),
    ).toEqual({
      MemoryAccounting: "yes",
      MemoryHigh: "infinity",
      MemoryMax: String(USER_CAP),
      MemorySwapMax: "0",
      OOMPolicy: "continue",
    });
    const slice = `user-${uid.alice}.slice`;
    expect(
      await show(slice, [
        "MemoryAccounting",
        "CPUAccounting",
        "IOAccounting",
        "MemoryHigh",
        "MemoryMax",
        "MemorySwapMax",
        "CPUWeight",
        "IOWeight",
      ]),
    ).toEqual({
      MemoryAccounting: "yes",
      CPUAccounting: "yes",
      IOAccounting: "yes",
      MemoryHigh: "infinity",
      MemoryMax: String(USER_CAP),
      MemorySwapMax: "0",
      CPUWeight: "100",
      IOWeight: "100",
    });
    expect(await show("system.slice", ["CPUWeight", "IOWeight"])).toEqual({ CPUWeight: "200", IOWeight: "200" });
    // alice's panes, opened before the build: tmux made a scope for each, and her manager's reload capped them.
    for (const [window, pane] of Object.entries(await panes("alice"))) {
      const scope = (await sh(`grep -m1 '^0::' /proc/${pane.pid}/cgroup`)).split("/").pop()!;
      expect(scope, window).toMatch(/^tmux-spawn-[0-9a-f-]+\.scope$/);
      expect(await show(scope, ["MemoryHigh", "MemoryMax", "OOMPolicy"], "alice"), window).toEqual({
        MemoryHigh: "infinity",
        MemoryMax: String(PANE_CAP),
        OOMPolicy: "continue",
      });
    }
    // Claude started only once inside its pane's scope (the launcher waits for tmux to move it).
    expect((await sh(`cat ${CALLS}`)).split("\n")[0]!.split("\t").pop()).toMatch(
      new RegExp(`/user@${uid.alice}\\.service/.*/tmux-spawn-[0-9a-f-]+\\.scope$`),
    );
    // What the kernel enforces (systemd applies a reload's caps a moment later).
    for (const unit of ["t3-serve@alice.service", slice])
      await waitFor(`${unit}'s cap in the kernel`, async () => (await enforced(unit)) === USER_CAP, 10_000);
  });

  it("runs earlyoom, enabled, with exactly the configured arguments; no systemd-oomd runs", async () => {
    expect(await sh("systemctl is-enabled earlyoom.service")).toBe("enabled");
    const pid = await sh("systemctl show -P MainPID earlyoom.service");
    expect(pid).toMatch(/^[1-9]\d*$/);
    const argv = (await sh(`tr '\\0' '\\n' < /proc/${pid}/cmdline`)).split("\n");
    expect(argv).toEqual(["/usr/bin/earlyoom", ...EARLYOOM_ARGS]);
    // Debian 13 installs no systemd-oomd; where it is installed the stage disables it (stages/containment.test.ts).
    expect((await vm.exec("systemctl is-active systemd-oomd.service")).stdout.trim()).not.toBe("active");
  });

  describe("runaways", () => {
    let bobBefore: { pane: string; t3: Record<string, string> };
    let aliceT3Before: Record<string, string>;
    let alicePanes: Record<string, { pid: string; dead: boolean; command: string }>;

    beforeAll(async () => {
      bobBefore = { pane: (await panes("bob")).bob!.pid, t3: await t3State("bob") };
      expect(await alive(bobBefore.pane)).toBe(true);
      aliceT3Before = await t3State("alice");
      alicePanes = await panes("alice");
    });

    it("kills a process in alice's pane that allocates past the cap, while the pane's shell and her other pane live on", async () => {
      const slice = `user-${uid.alice}.slice`;
      const hitsBefore = await capHits(slice);
      await sh(`touch ${SCENE}/go`);
      const exit = await waitFor(
        "the runaway in alice's pane to end",
        async () => (await vm.exec(`cat ${SCENE}/pane-exit`)).stdout.trim() || undefined,
      );
      // 137: killed by SIGKILL, the kernel's OOM kill.
      expect(exit).toBe("137");
      const now = await panes("alice");
      expect(now.runaway).toEqual({ ...alicePanes.runaway, dead: false });
      expect(await alive(alicePanes.runaway!.pid)).toBe(true);
      // Her other pane still runs Claude (the stand-in, held).
      expect(now.claude).toEqual({ pid: alicePanes.claude!.pid, dead: false, command: "claude" });
      if (cgroupV1) {
        // Here the user's slice stopped it: a v1 kernel knows no cgroup of her manager's scopes.
        expect(await capHits(slice)).toBeGreaterThan(hitsBefore);
      } else {
        const scope = (await sh(`grep -m1 '^0::' /proc/${alicePanes.runaway!.pid}/cgroup`)).split("/").pop()!;
        expect(await capHits(scope, "alice")).toBeGreaterThan(0);
      }
    });

    it("kills a child of alice's t3 server that allocates past the server's cap, and the server still answers", async () => {
      const hitsBefore = await capHits("t3-serve@alice.service");
      const [status, body] = (await fetchFrom("alice", "/api/stand-in/spawn", { command: RUNAWAY })).split(" ");
      expect(status).toBe("200");
      const child = (JSON.parse(body!) as { pid: number }).pid;
      const ended = await waitFor(
        "the t3 server's runaway child to end",
        async () =>
          (await sh(
            `journalctl -u t3-serve@alice.service -o cat --no-pager | grep '^child ${child} exited' || true`,
          )) || undefined,
      );
      // The shell the server ran reports its pipeline killed by SIGKILL.
      expect(ended).toBe(`child ${child} exited: code 137`);
      expect(await capHits("t3-serve@alice.service")).toBeGreaterThan(hitsBefore);
      expect(await t3State("alice")).toEqual(aliceT3Before);
      expect(await fetchFrom("alice", "/")).toMatch(/^200 <!doctype html>/);
    });

    it("leaves bob's processes untouched by both kills", async () => {
      expect((await panes("bob")).bob).toEqual({ pid: bobBefore.pane, dead: false, command: "sleep" });
      expect(await alive(bobBefore.pane)).toBe(true);
      expect(await t3State("bob")).toEqual(bobBefore.t3);
      expect(await capHits("t3-serve@bob.service")).toBe(0);
      expect(await capHits(`user-${uid.bob}.slice`)).toBe(0);
    });
  });

  it("changes nothing on a second build, and --plan after a hand edit of a drop-in names it and the reload", async () => {
    const again = await build("--stage", "containment,units,instances");
    expect(again.exitCode, again.log).toBe(0);
    expect(again.report.stages.filter((s) => s.outcome !== "unchanged").map((s) => s.name)).toEqual([]);
    await sh(`sed -i 's/^MemoryMax=.*/MemoryMax=6G/' ${PANE_SCOPE_DROP_IN}`);
    const plan = await build("--plan", "--stage", "containment");
    expect(plan.exitCode, plan.log).toBe(3);
    const stage = plan.report.stages.find((s) => s.name === "containment")!;
    expect("changes" in stage && stage.changes).toEqual([
      expect.objectContaining({
        kind: "content",
        path: PANE_SCOPE_DROP_IN,
        diff: expect.stringContaining("-MemoryMax=6G\n+MemoryMax=64M"),
      }),
      { kind: "action", description: "daemon-reload alice's systemd manager (alice's open panes take the pane cap)" },
    ]);
  });
});
