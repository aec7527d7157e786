// The per-user stages users and instances on a booted box of the test release (systemd
// as PID 1), checked from outside the builder: accounts and groups
// (additive only), the ttyd map, /etc/ttyd-admins and dispatch.json, sticky ports in the env
// files, the t3-serve@ instances really running on them, and an env change
// that waits while an agent session runs under the instance.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { installInstanceLayer } from "./support/harness/instance-layer.ts";
import { buildIn, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";

const INPUTS = "/tmp/inputs";
const ROSTER = `users:
  wizard:
    authentik_user: merlin
    k8s_user: wizard-admin
    tier: admin
    code_layout: workspace
    repos: [devvm]
  alice:
    authentik_user: alice.moreau
    k8s_user: amoreau
    tier: power-user
  bob:
    authentik_user: bkowalski
    k8s_user: bob-k
    tier: namespace-owner
    namespaces: [payments]
    parked: true
`;
// What the t3 stage installs, as a stand-in: `t3 serve` answers GET / with its
// user and port; with ~/.busy it runs a child named claude, as a session would.
const T3_STAND_IN = `#!/usr/local/bin/node
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]);
if (fs.existsSync(process.env.HOME + "/.busy")) {
  const child = spawn("bash", ["-c", "exec -a claude sleep infinity"], { stdio: "ignore" });
  fs.writeFileSync("/tmp/claude-" + process.env.USER + ".pid", String(child.pid));
}
const group = require("node:child_process").execFileSync("id", ["-gn"], { encoding: "utf8" }).trim();
const said = [process.env.USER, port, process.env.NODE_ENV, group, process.env.PATH].join(" ");
require("node:http").createServer((q, r) => r.end(said)).listen(port, "127.0.0.1");
`;

describe("users on a booted box of the test release", () => {
  let vm: DevvmContainer;
  let first: BuildRun;
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const build = async () => {
    const run = await buildIn(vm, {}, "--stage", "users,instances", "--inputs", INPUTS);
    process.stderr.write(`build --stage users,instances: exit ${run.exitCode}\n${run.log}`);
    return run;
  };
  const outcome = (run: BuildRun, stage = "users") => run.report.stages.find((s) => s.name === stage)?.outcome;
  const answer = (port: number) =>
    sh(`${NODE_IN_CONTAINER} -e 'fetch("http://127.0.0.1:${port}/").then(r => r.text()).then(console.log)'`);
  const mainPid = (user: string) => sh(`systemctl show -P MainPID t3-serve@${user}.service`);

  beforeAll(async () => {
    vm = await startFreshVm();
    await installInstanceLayer(vm, T3_STAND_IN);
    // An existing user with a group of its own; the admin's restored home holds a single clone.
    await vm.exec(
      "groupadd extra && useradd -m -s /bin/bash -G extra alice && chmod 0751 /home/alice && mkdir /home/wizard/code/.git && echo infra > /home/wizard/code/README",
      { check: true },
    );
    await vm.exec(
      [
        "sh",
        "-c",
        `mkdir ${INPUTS} && cp ${PROJECT_DIR_IN_CONTAINER}/packages.txt ${PROJECT_DIR_IN_CONTAINER}/pins.json ${INPUTS}/ && printf %s "$ROSTER" > ${INPUTS}/roster.yaml`,
      ],
      { check: true, env: { ROSTER } },
    );
    first = await build();
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
  });

  it("reconciles the roster", () => {
    expect(first.exitCode, first.log).toBe(0);
    expect(outcome(first)).toBe("changed");
    expect(outcome(first, "instances")).toBe("changed");
  });

  it("creates the accounts with their tier's groups and keeps an existing user's own group", async () => {
    expect((await sh("id -nG alice")).split(" ").sort()).toEqual(["alice", "devvm-power-user", "extra"]);
    expect((await sh("id -nG wizard")).split(" ").sort()).toEqual([
      "code-shared",
      "devvm-admin",
      "docker",
      "sudo",
      "wizard",
    ]);
    expect((await sh("id -nG bob")).split(" ").sort()).toEqual(["bob", "devvm-namespace-owner"]);
    for (const group of ["devvm-admin", "devvm-power-user", "docker", "code-shared"])
      expect(Number(await sh(`getent group ${group} | cut -d: -f3`)), group).toBeLessThan(1000);
  });

  it("creates a new account with zsh, a locked password and a home of its own (0700); an existing one keeps its shell and home", async () => {
    expect(await sh("getent passwd bob | cut -d: -f6,7")).toBe("/home/bob:/bin/zsh");
    expect((await sh("passwd -S bob")).split(" ")[1]).toBe("L");
    expect(await vm.stat("/home/bob")).toEqual({ type: "directory", mode: "0700", owner: "bob", group: "bob" });
    expect(await sh("getent passwd alice | cut -d: -f7")).toBe("/bin/bash");
    expect(await vm.stat("/home/alice")).toMatchObject({ mode: "0751", owner: "alice" });
  });

  it("writes the ttyd map, the admins' list, dispatch.json and a sticky port per user in an env file of 0600", async () => {
    expect(await vm.stat("/etc/ttyd-user-map")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });
    expect(await vm.stat("/etc/ttyd-admins")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });
    expect(await vm.readFile("/etc/ttyd-admins")).toBe(
      "# Generated by the devvm builder (stage users) from roster.yaml: do not edit.\n# The OS users of the roster's admin tier, sorted, one a line.\n# The next run overwrites this file.\nwizard\n",
    );
    // bob is parked: no instance, so no way in.
    expect(await vm.readFile("/etc/ttyd-user-map")).toBe(
      "# Generated by the devvm builder (stage users) from roster.yaml: do not edit.\n# authentik_user=os_user, in t3 port order; the next run overwrites this file.\nalice.moreau=alice\nmerlin=wizard\n",
    );
    expect(await vm.stat("/etc/t3-serve/dispatch.json")).toEqual({
      type: "file",
      mode: "0644",
      owner: "root",
      group: "root",
    });
    expect(await vm.readFile("/etc/t3-serve/dispatch.json")).toBe(
      '{"alice.moreau":{"os_user":"alice","port":3773},"merlin":{"os_user":"wizard","port":3775}}\n',
    );
    expect(await vm.stat("/etc/t3-serve")).toEqual({ type: "directory", mode: "0755", owner: "root", group: "root" });
    for (const [user, port] of [
      ["alice", 3773],
      ["bob", 3774],
      ["wizard", 3775],
    ] as const) {
      expect(await vm.readFile(`/etc/t3-serve/${user}.env`)).toBe(`T3_PORT=${port}\n`);
      expect(await vm.stat(`/etc/t3-serve/${user}.env`)).toEqual({
        type: "file",
        mode: "0600",
        owner: "root",
        group: "root",
      });
    }
    expect((await vm.exec("test -e /var/lib/devvm/ports.json")).exitCode).toBe(1);
  });

  it("runs t3 serve for each active user on its port, as the user and the user's group, and nothing for the parked one", async () => {
    for (const [user, port] of [
      ["alice", 3773],
      ["wizard", 3775],
    ] as const) {
      expect(await sh(`systemctl is-enabled t3-serve@${user}.service`)).toBe("enabled");
      expect(await sh(`systemctl is-active t3-serve@${user}.service`)).toBe("active");
      let said = "";
      for (let i = 0; i < 50 && !said; i++) said = await answer(port).catch(() => "");
      expect(said).toBe(`${user} ${port} production ${user} /home/${user}/.local/bin:/usr/local/bin:/usr/bin:/bin`);
    }
    expect((await vm.exec("systemctl is-enabled t3-serve@bob.service")).stdout.trim()).toBe("disabled");
    expect((await vm.exec("systemctl is-active t3-serve@bob.service")).stdout.trim()).toBe("inactive");
  });

  it("a second build changes nothing and restarts nothing", async () => {
    const pid = await mainPid("alice");
    const second = await build();
    expect(second.exitCode, second.log).toBe(0);
    expect(outcome(second)).toBe("unchanged");
    expect(outcome(second, "instances")).toBe("unchanged");
    expect(await mainPid("alice")).toBe(pid);
  });

  it("restarts an instance for a changed env file only once no agent runs under it", async () => {
    // A T3_PORT line lost by hand: the builder puts it back, keeping the other line.
    await vm.exec(
      "touch /home/alice/.busy && systemctl restart t3-serve@alice.service && sleep 1 && echo NOTE=kept > /etc/t3-serve/alice.env",
      { check: true },
    );
    const pid = await mainPid("alice");
    const busy = await build();
    expect(busy.exitCode, busy.log).toBe(0);
    expect(await vm.readFile("/etc/t3-serve/alice.env")).toBe("NOTE=kept\nT3_PORT=3773\n");
    expect(busy.log).toMatch(/restart of t3-serve@alice.service still due: busy \(claude pid \d+\)/);
    expect(await vm.readFile("/var/lib/devvm/pending-restarts.json")).toBe('["t3-serve@alice.service"]\n');
    expect(await mainPid("alice")).toBe(pid);

    const stillBusy = await build();
    expect(outcome(stillBusy)).toBe("unchanged");
    expect(outcome(stillBusy, "instances")).toBe("unchanged");
    expect(stillBusy.log).toMatch(/restart of t3-serve@alice.service still due: busy \(claude pid \d+\)/);

    await vm.exec("rm /home/alice/.busy && kill $(cat /tmp/claude-alice.pid)", { check: true });
    const idle = await build();
    expect(idle.exitCode, idle.log).toBe(0);
    expect(idle.log).toContain("restart t3-serve@alice.service");
    expect(await mainPid("alice")).not.toBe(pid);
    expect((await vm.exec("test -e /var/lib/devvm/pending-restarts.json")).exitCode).toBe(1);
    const after = await build();
    expect([outcome(after), outcome(after, "instances")]).toEqual(["unchanged", "unchanged"]);
  });
});
