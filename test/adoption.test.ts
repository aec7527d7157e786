// Taking over the live devvm (docs/devvm.md "Adopting the live devvm"): a
// fresh box of the live box's release (Ubuntu 24.04) prepared the way the
// old scripts left it (without running them), then one full build started
// as the README says, `./bootstrap.sh` from the project's folder, against
// the stand-ins. The box then has exactly that release's apt pins (the
// snapshot archive, a stand-in, never asked) and a t3-dispatch built by its
// Go; every user keeps their port, their env lines, their home and clone;
// the old reconcile and updater are gone; and sign-in works end to end
// through t3-dispatch (the stand-in of test/fixtures/t3-dispatch, built from
// the admin's checkout, the default source). test/releases.test.ts makes the
// same per-release checks on the other releases. Checked from outside:
// packages, files, units, HTTP answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pins } from "../lib/inputs/pins.ts";
import { releaseByKey } from "../lib/machine/releases.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { runTmuxSaveOnce } from "./support/harness/box-timers.ts";
import { buildIn, nonIdempotentStages, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";
import { ADMIN_KUBECONFIG } from "./support/fixtures/kubeconfig.ts";
import { startAptArchiveStandIn, type AptArchiveStandIn } from "./support/stand-ins/apt-archive.ts";
import { startVaultStandIn, type VaultStandIn } from "./support/stand-ins/vault.ts";
import { startStandInSources, writeInputs, type StandInSources } from "./support/stand-ins/sources.ts";
import {
  LIVE_BOX_RELEASE,
  takeOverWithBootstrap,
  DAVE,
  ENV_FILES,
  INPUTS,
  K8S_USERS,
  OLD,
  OLD_BOX,
  OLD_LAUNCHER,
  RECONCILE,
  rosterYaml,
  SHARED_OAUTH,
  TOKEN,
  USERS,
  HOMES,
  DAVES_FILES,
  OUTSIDE_HOMES,
  ALICES_OUTSIDE_HOMES,
  PLANT_LINKS_AS_ALICE,
  PLANTED_LINKS_NAMED,
  signIn,
  VAULT_SECRETS,
  takeoverChecksOnItsRelease,
} from "./support/harness/adoption-box.ts";

const release = releaseByKey(LIVE_BOX_RELEASE)!;

describe(`adopting the live devvm, on ${release.name}`, () => {
  let sources: StandInSources;
  let snapshot: AptArchiveStandIn;
  let vault: VaultStandIn;
  let vm: DevvmContainer;
  let plan: BuildRun;
  let timersBeforeBuild: string;
  let first: BuildRun;
  let homesBefore: string;
  // The snapshot archive a stand-in that must never be asked: the release's mirror offers every pin.
  const env = () => ({
    ...sources.env,
    VAULT_ADDR: vault.address,
    VAULT_TOKEN: TOKEN,
    DEVVM_APT_SNAPSHOT_URL: snapshot.snapshotUrl,
  });
  const build = async (...args: string[]): Promise<BuildRun> => {
    const run = await buildIn(vm, env(), "--inputs", INPUTS, ...args);
    process.stderr.write(`build ${args.join(" ")}: exit ${run.exitCode}\n${run.log}`);
    return run;
  };
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const writeRoster = (users: Record<string, Record<string, unknown>>) =>
    vm.exec(["sh", "-c", `printf %s "$R" > ${INPUTS}/roster.yaml`], { check: true, env: { R: rosterYaml(users) } });
  const homes = () => sh(HOMES);
  const aptPins = () => sources.pins.apt[release.key as keyof Pins["apt"]]!;

  beforeAll(async () => {
    [sources, snapshot] = await Promise.all([startStandInSources(), startAptArchiveStandIn()]);
    vault = await startVaultStandIn(TOKEN, VAULT_SECRETS);
    vm = await startFreshVm("project", release.key);
    await writeInputs(vm, INPUTS, sources.pins);
    await writeRoster(USERS);
    await vm.exec(OLD_BOX, { check: true });
    homesBefore = await homes();
    plan = await build("--plan");
    timersBeforeBuild = await sh("systemctl list-timers --all --no-pager --no-legend");
    // The README's command, from the project's folder: bootstrap.sh installs its fetch tools at this release's pins.
    first = await takeOverWithBootstrap(vm, env());
    process.stderr.write(`bootstrap.sh: exit ${first.exitCode}\n${first.log}`);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await vault?.[Symbol.asyncDispose]();
    await sources?.[Symbol.asyncDispose]();
    await snapshot?.[Symbol.asyncDispose]();
  });

  it("shows the retirement under --plan first, changing nothing", () => {
    expect(plan.exitCode, plan.log).toBe(3);
    expect(plan.log).toContain("stop and disable t3-autoupdate.timer (replaced by devvm-t3-pin.timer)");
    expect(plan.log).toContain("remove /etc/systemd/system/t3-provision-users.service");
    for (const name of OLD) expect(timersBeforeBuild).toContain(`${name}.timer`);
  });

  takeoverChecksOnItsRelease(release, () => ({
    vm,
    first,
    snapshotRequests: () => snapshot.requests(),
    aptPins: aptPins(),
  }));

  it("keeps every user's port and every env line, at 0600; a non-admin without a login gets the shared one appended", async () => {
    // bob (a non-admin with no token and no login of his own) gets the shared Claude login (stage logins).
    const expected = { ...ENV_FILES, bob: `${ENV_FILES.bob}CLAUDE_CODE_OAUTH_TOKEN=${SHARED_OAUTH}\n` };
    for (const [user, text] of Object.entries(expected)) {
      expect(await vm.readFile(`/etc/t3-serve/${user}.env`), user).toBe(text);
      expect(await vm.stat(`/etc/t3-serve/${user}.env`)).toEqual({
        type: "file",
        mode: "0600",
        owner: "root",
        group: "root",
      });
    }
  });

  it("writes dispatch.json and the ttyd map byte for byte", async () => {
    expect(await vm.readFile("/etc/t3-serve/dispatch.json")).toBe(
      '{"alice.moreau":{"os_user":"alice","port":3774},"bkowalski":{"os_user":"bob","port":3775},"merlin":{"os_user":"wizard","port":3773}}\n',
    );
    expect(await vm.readFile("/etc/ttyd-user-map")).toBe(
      "# Generated by the devvm builder (stage users) from roster.yaml: do not edit.\n# authentik_user=os_user, in t3 port order; the next run overwrites this file.\nmerlin=wizard\nalice.moreau=alice\nbkowalski=bob\n",
    );
    expect(await vm.stat("/etc/t3-serve/dispatch.json")).toEqual({
      type: "file",
      mode: "0644",
      owner: "root",
      group: "root",
    });
    expect(await vm.stat("/etc/ttyd-user-map")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });
  });

  it("retires the old units, their programs and the global npm t3, and says so", async () => {
    const timers = await sh("systemctl list-timers --all --no-pager --no-legend");
    for (const name of OLD) {
      expect(timers).not.toContain(`${name}.timer`);
      for (const file of [
        `/etc/systemd/system/${name}.service`,
        `/etc/systemd/system/${name}.timer`,
        `/etc/systemd/system/timers.target.wants/${name}.timer`,
        `/usr/local/bin/${name}.sh`,
      ]) {
        expect((await vm.exec(`test -e ${file} || test -L ${file}`)).exitCode, file).toBe(1);
      }
      expect(first.log).toContain(`remove /usr/local/bin/${name}.sh (old ${name}'s program)`);
    }
    expect(timers).toContain("devvm-reconcile.timer");
    expect((await vm.exec("test -L /usr/bin/t3 || test -e /usr/lib/node_modules/t3")).exitCode).toBe(1);
    expect(first.log).toContain("remove /usr/bin/t3 (global npm t3 of the old updater)");
    expect((await vm.exec("command -v t3")).stdout.trim()).toBe("/usr/local/bin/t3");
  });

  it("copies each t3 database before the builder's t3 replaces the old updater's 0.0.25", async () => {
    const copy = "/var/backups/t3-state/alice/state-prebump-0.0.25-0.0.26.sqlite";
    expect(await vm.stat(copy)).toMatchObject({ type: "file", owner: "alice" });
    expect(await sh(`sqlite3 ${copy} 'select x from t'`)).toBe("25");
    expect((await vm.exec("test -e /var/backups/t3-state/bob")).exitCode).toBe(1);
  });

  it("leaves homes and clones as they were (the admin's tree only loses o-rx), adding only the shared Codex login, the current launcher for non-admins and the login sync's own folders", async () => {
    // What claude-auth-sync's sandbox writes (its two folders, 0700, the user's Vault token in one, 0600), and
    // the parents it needs, made 0700 only where missing: nothing else new, nothing there before changed.
    const sync =
      /^\/home\/[^/ ]+\/(\.claude|\.config|\.local|\.local\/state|\.config\/claude-auth-sync(\/vault-token)?|\.local\/state\/claude-auth-sync)$/;
    const pathOf = (line: string) => (line.startsWith("/") ? line.split(" ")[0]! : line.split(/\s+/)[1]!);
    const existed = new Set(homesBefore.split("\n").map(pathOf));
    const after = (await homes()).split("\n");
    const added = after.filter((line) => !existed.has(pathOf(line)));
    expect(added.filter((line) => !sync.test(pathOf(line)))).toEqual([]);
    expect(after.filter((line) => existed.has(pathOf(line))).join("\n")).toBe(
      homesBefore.replace("/home/wizard/code drwxrwxr-x", "/home/wizard/code drwxrwx---"),
    );
    for (const user of ["alice", "bob"]) {
      expect(added).toContain(`/home/${user}/.config/claude-auth-sync drwx------ ${user} ${user} 4096`);
      expect(await vm.stat(`/home/${user}/.config/claude-auth-sync/vault-token`)).toMatchObject({
        type: "file",
        mode: "0600",
        owner: user,
      });
    }
    for (const user of Object.keys(USERS))
      expect(await vm.stat(`/home/${user}/.codex/auth.json`)).toMatchObject({
        type: "symlink",
        linkTarget: "/opt/codex-shared/auth.json",
      });
    // The old scripts' launcher: replaced for non-admins (theirs), kept for the admin.
    const current = await vm.readFile("/etc/skel/start-claude.sh");
    for (const user of ["alice", "bob"]) {
      expect(await vm.readFile(`/home/${user}/start-claude.sh`)).toBe(current);
      expect(await vm.stat(`/home/${user}/start-claude.sh`)).toMatchObject({ mode: "0755", owner: user, group: user });
    }
    expect(await vm.readFile("/home/wizard/start-claude.sh")).toBe(OLD_LAUNCHER);
    expect(plan.log).toMatch(/\/home\/alice\/start-claude\.sh/);
  });

  it("a second build changes nothing", async () => {
    const second = await build();
    expect(second.exitCode, second.log).toBe(0);
    expect(nonIdempotentStages(second.report), second.log).toEqual([]);
  });

  it("signs each user in through t3-dispatch, answered by their own instance; an unknown name gets 403", async () => {
    for (const [os, user] of Object.entries(USERS)) {
      const response = await signIn(`${user.authentik_user}@example.org`);
      expect(response.status, os).toBe(200);
      expect(response.headers.get("x-t3-stand-in-base-dir")).toBe(`/home/${os}/.t3`);
      const cookie = /t3_session=([^;]+)/.exec(response.headers.get("set-cookie") ?? "")?.[1];
      expect(cookie, os).toBeTruthy();
      // The session is in that user's own t3 state, made by that user's instance.
      expect(
        JSON.parse(await vm.readFile(`/home/${os}/.t3/userdata/state.json`)).sessions.map(
          (s: { session: string }) => s.session,
        ),
      ).toContain(cookie);
      const again = await signIn(`${user.authentik_user}@example.org`, `t3_session=${cookie}`);
      expect(again.status).toBe(200);
      expect(again.headers.get("x-t3-stand-in-base-dir")).toBe(`/home/${os}/.t3`);
    }
    expect((await signIn("mallory@example.org")).status).toBe(403);
  });

  it("stops the users stage before any change when the cluster gives a user another tier; an absent user only warns", async () => {
    const carol = { authentik_user: "carol.c", k8s_user: "ccarlsen", tier: "power-user" };
    await writeRoster({ ...USERS, carol });
    vault.setSecret("secret/platform", {
      k8s_users: JSON.stringify({ ...K8S_USERS, amoreau: { role: "namespace-owner" } }),
    });
    const state = "sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/t3-serve/* /etc/ttyd-user-map";
    const before = await sh(state);
    // builder-install too: the hourly reconcile runs the installed copy of the roster.
    const refused = await build("--stage", "builder-install,users");
    expect(refused.exitCode).toBe(1);
    expect(refused.report.stages.find((s) => s.name === "users")?.outcome).toBe("failed");
    expect(refused.log).toContain(
      "alice (k8s user amoreau): roster.yaml says tier power-user, the cluster says namespace-owner",
    );
    expect(await sh(state)).toBe(before);
    expect((await vm.exec("id carol")).exitCode).not.toBe(0);

    vault.setSecret("secret/platform", { k8s_users: JSON.stringify(K8S_USERS) });
    const pending = await build("--stage", RECONCILE);
    expect(pending.exitCode, pending.log).toBe(0);
    expect(pending.log).toContain(
      "warning: carol (k8s user ccarlsen) is not in Vault's secret/platform field k8s_users yet",
    );
    // A new non-admin: the next free port, and the shared Claude login (stage logins).
    expect(await vm.readFile("/etc/t3-serve/carol.env")).toBe(
      `T3_PORT=3776\nCLAUDE_CODE_OAUTH_TOKEN=${SHARED_OAUTH}\n`,
    );
  });

  it("a user dropped from the roster gets 403 after the next build (t3-dispatch rereads its map every minute)", async () => {
    expect((await signIn("bkowalski@example.org")).status).toBe(200);
    const { bob: _, ...rest } = USERS;
    await writeRoster(rest);
    // Without builder-install the box's hourly reconcile would put bob back: the build says so.
    const warned = await build("--stage", "users", "--plan");
    expect(warned.log).toContain(
      "warning: the hourly reconcile reads /opt/devvm/builder/roster.yaml, which differs from this build's roster.yaml and will undo it",
    );
    const dropped = await build("--stage", RECONCILE);
    expect(dropped.exitCode, dropped.log).toBe(0);
    expect(await vm.readFile("/etc/t3-serve/dispatch.json")).not.toContain("bkowalski");
    let status = 0;
    for (let waited = 0; waited < 75_000 && status !== 403; waited += 2_000) {
      status = (await signIn("bkowalski@example.org")).status;
      if (status !== 403) await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
    const seen = async () =>
      `${await sh("cat /etc/t3-serve/dispatch.json /etc/ttyd-user-map")}\n${(await vm.exec("journalctl -u t3-dispatch -o short-monotonic --no-pager | tail -40")).stdout}`;
    expect(status, status === 403 ? "" : await seen()).toBe(403);
    expect((await signIn("alice.moreau@example.org")).status).toBe(200);
  });
  it("names the links a user planted in her home and follows none: nothing outside the homes changes, the others get everything", async () => {
    // The admin's kubeconfig, as the real box has one: each non-admin without a kubeconfig gets one from it.
    await vm.exec(
      [
        "sh",
        "-c",
        'install -d -o wizard -g wizard /home/wizard/.kube && printf %s "$K" > /home/wizard/.kube/config && chown wizard:wizard /home/wizard/.kube/config',
      ],
      { check: true, env: { K: ADMIN_KUBECONFIG } },
    );
    const { bob: _, ...rest } = USERS;
    await writeRoster({ ...rest, dave: DAVE });
    const settled = await build("--stage", `${RECONCILE},workspaces`);
    expect(settled.exitCode, settled.log).toBe(0);
    expect(await vm.stat("/home/alice/.kube/config")).toMatchObject({ type: "file", owner: "alice" });
    const daves = () => sh(DAVES_FILES);
    const daveBefore = await daves();
    expect(daveBefore).toContain("/home/dave/.kube/config -rw------- dave");

    // alice, as herself, on the box just built: her ~/.kube pointed at root's, her ~/.codex at a folder under /etc.
    await vm.exec("install -d -m 0700 /root/.kube", { check: true });
    await vm.exec(PLANT_LINKS_AS_ALICE, { check: true });
    const links = PLANTED_LINKS_NAMED;
    const outside = () => sh(OUTSIDE_HOMES);
    const alices = () => sh(ALICES_OUTSIDE_HOMES);
    // The box's own 5-minute tmux save makes /var/lib/tmux-persist on its first run: run now, not when the clock says.
    await runTmuxSaveOnce(vm);
    const before = await outside();
    expect(await alices()).toBe("");

    const plan = await build("--plan");
    for (const link of links) expect(plan.log).toContain(link);
    const full = await build();
    expect(full.exitCode, full.log).toBe(0);
    for (const link of links) expect(full.log).toContain(link);
    // The hourly reconcile, as its timer runs it: the installed builder.
    const reconcile = await vm.exec("systemctl start devvm-reconcile.service");
    expect(reconcile.exitCode, reconcile.stderr).toBe(0);
    const journal = await sh("journalctl -u devvm-reconcile.service -o cat --no-pager");
    for (const link of links) expect(journal).toContain(link);

    expect(await outside()).toBe(before);
    expect(await alices()).toBe("");
    expect((await vm.exec("ls -A /root/.kube /etc/sudoers.d")).stdout).not.toMatch(/config|AGENTS\.md|auth\.json/);
    expect(await vm.stat("/home/alice/.kube")).toMatchObject({
      type: "symlink",
      linkTarget: "/root/.kube",
      owner: "alice",
    });
    expect(await vm.stat("/home/alice/.codex")).toMatchObject({
      type: "symlink",
      linkTarget: "/etc/sudoers.d",
      owner: "alice",
    });
    expect(await daves()).toBe(daveBefore);

    const again = await build();
    expect(again.exitCode, again.log).toBe(0);
    for (const link of links) expect(again.log).toContain(link);
    expect(nonIdempotentStages(again.report), again.log).toEqual([]);
    const strict = await build("--stage", "logins", "--strict");
    expect(strict.exitCode).toBe(1);
    expect(strict.log).toContain(links[1]);
    expect(await outside()).toBe(before);
  });
});
