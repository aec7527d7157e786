// Taking over the live devvm (docs/devvm.md "Adopting the live devvm"): a box
// prepared the way the old scripts left it (without running them), then one
// full build against the stand-ins. Every user keeps their port, their env
// lines, their home and clone; the old reconcile and updater are gone; and
// sign-in works end to end through t3-dispatch (the stand-in of test/
// fixtures/t3-dispatch, built from the admin's checkout, the default
// source). Checked from outside: files, units, HTTP answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { buildIn, nonIdempotentStages, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";
import { ADMIN_KUBECONFIG } from "./support/fixtures/kubeconfig.ts";
import { startVaultStandIn, type VaultStandIn } from "./support/stand-ins/vault.ts";
import { startStandInSources, writeInputs, type StandInSources } from "./support/stand-ins/sources.ts";

const INPUTS = "/opt/devvm-inputs";
const TOKEN = "hvs.adoption-stand-in-token";
const SHARED_OAUTH = "sk-ant-oat01-shared-adoption";
const ALICE_ENV =
  "# provisioned by t3-provision-users\nT3_PORT=3774\nCLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-alice-own-7f3a\nLANG=C.UTF-8\n";
const ENV_FILES = { wizard: "T3_PORT=3773\n", alice: ALICE_ENV, bob: "T3_PORT=3775\n" };
const USERS = {
  wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
  alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
  bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "namespace-owner", namespaces: ["payments"] },
};
const K8S_USERS = { amoreau: { role: "power-user" }, "bob-k": { role: "namespace-owner" } };
const OLD = ["t3-provision-users", "t3-autoupdate", "t3-backup-state"];
const DISPATCH = "http://127.0.0.1:3780/";
// What an admin runs after editing the roster: the reconcile's stages, and the installed copy of the inputs it reads.
const RECONCILE = "builder-install,users,offboarding,logins,instances";

/** What the old scripts left: accounts, homes and a clone, env files, their units and timers running, a global npm t3. */
const OLD_BOX = `set -e
for u in wizard alice bob; do useradd -m -s /bin/bash "$u"; done
mkdir -p /home/wizard/code/.git /home/wizard/code/scripts
cp -r ${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-dispatch /home/wizard/code/scripts/t3-dispatch
echo 'decrypted' > /home/wizard/code/secrets.env
chown -R wizard:wizard /home/wizard
mkdir -p /home/alice/code/.git /home/alice/.claude /home/alice/.local/bin
echo 'ref: refs/heads/master' > /home/alice/code/.git/HEAD
echo 'my notes' > /home/alice/code/notes.md
echo '{"theme":"dark"}' > /home/alice/.claude/settings.json
chown -R alice:alice /home/alice
install -d -m 0755 /etc/t3-serve
${Object.entries(ENV_FILES)
  .map(([user, text]) => `printf '%b' '${text.replace(/\n/g, "\\n")}' > /etc/t3-serve/${user}.env`)
  .join("\n")}
chmod 0600 /etc/t3-serve/*.env
for n in ${OLD.join(" ")}; do
  printf '#!/bin/sh\\ntrue\\n' > /usr/local/bin/$n.sh && chmod 0755 /usr/local/bin/$n.sh
  printf '[Unit]\\nDescription=old %s\\n[Service]\\nType=oneshot\\nExecStart=/usr/local/bin/%s.sh\\n' $n $n > /etc/systemd/system/$n.service
  printf '[Unit]\\nDescription=old %s timer\\n[Timer]\\nOnCalendar=hourly\\n[Install]\\nWantedBy=timers.target\\n' $n > /etc/systemd/system/$n.timer
done
systemctl daemon-reload
systemctl enable --now ${OLD.map((n) => `${n}.timer`).join(" ")}
mkdir -p /usr/lib/node_modules/t3/bin
printf '#!/bin/sh\\necho t3 v0.0.25\\n' > /usr/lib/node_modules/t3/bin/t3.js && chmod 0755 /usr/lib/node_modules/t3/bin/t3.js
printf '{"name":"t3","version":"0.0.25"}\\n' > /usr/lib/node_modules/t3/package.json
runuser -u alice -- sh -c 'mkdir -p /home/alice/.t3/userdata && sqlite3 /home/alice/.t3/userdata/state.sqlite "create table t(x); insert into t values (25);"'
ln -s ../lib/node_modules/t3/bin/t3.js /usr/bin/t3
`;

const DAVE = { authentik_user: "dave.d", k8s_user: "ddavis", tier: "power-user" };
const rosterYaml = (users: Record<string, Record<string, unknown>>) => JSON.stringify({ users }, null, 2);

describe("adopting the live devvm", () => {
  let sources: StandInSources;
  let vault: VaultStandIn;
  let vm: DevvmContainer;
  let plan: BuildRun;
  let timersBeforeBuild: string;
  let first: BuildRun;
  let homesBefore: string;
  const env = () => ({ ...sources.env, VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN });
  const build = async (...args: string[]): Promise<BuildRun> => {
    const run = await buildIn(vm, env(), "--inputs", INPUTS, ...args);
    process.stderr.write(`build ${args.join(" ")}: exit ${run.exitCode}\n${run.log}`);
    return run;
  };
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const writeRoster = (users: Record<string, Record<string, unknown>>) =>
    vm.exec(["sh", "-c", `printf %s "$R" > ${INPUTS}/roster.yaml`], { check: true, env: { R: rosterYaml(users) } });
  // Every path under /home with mode, owner, size and content hash, but what the build gives: the
  // instances' own state (~/.t3) and the shared Codex login (~/.codex, stage logins).
  const homes = () =>
    sh(
      "find /home \\( -name .t3 -o -name .codex \\) -prune -o -printf '%p %M %u %g %s\\n' | sort; find /home \\( -name .t3 -o -name .codex \\) -prune -o -type f -exec sha256sum {} + | sort",
    );
  const signIn = (authentikUser: string, cookie?: string) =>
    fetch(DISPATCH, {
      headers: { "X-authentik-username": authentikUser, ...(cookie ? { cookie } : {}) },
      redirect: "manual",
      signal: AbortSignal.timeout(30_000),
    });

  beforeAll(async () => {
    sources = await startStandInSources();
    vault = await startVaultStandIn(TOKEN, {
      "secret/workstation": { claude_oauth_token: SHARED_OAUTH, codex_shared_auth_json: '{"tokens":{}}\n' },
      "secret/platform": { k8s_users: JSON.stringify(K8S_USERS) },
    });
    vm = await startFreshVm();
    // The old box had sqlite3 (its backup used it); here it makes a user's t3 database.
    await vm.exec("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlite3", { check: true });
    await writeInputs(vm, INPUTS, sources.pins);
    await writeRoster(USERS);
    await vm.exec(OLD_BOX, { check: true });
    homesBefore = await homes();
    plan = await build("--plan");
    timersBeforeBuild = await sh("systemctl list-timers --all --no-pager --no-legend");
    first = await build();
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await vault?.[Symbol.asyncDispose]();
    await sources?.[Symbol.asyncDispose]();
  });

  it("shows the retirement under --plan first, changing nothing", () => {
    expect(plan.exitCode, plan.log).toBe(3);
    expect(plan.log).toContain("stop and disable t3-autoupdate.timer (replaced by devvm-t3-pin.timer)");
    expect(plan.log).toContain("remove /etc/systemd/system/t3-provision-users.service");
    for (const name of OLD) expect(timersBeforeBuild).toContain(`${name}.timer`);
  });

  it("builds", () => {
    expect(first.exitCode, first.log).toBe(0);
  });

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

  it("leaves homes and clones as they were (the admin's tree only loses o-rx), adding only the shared Codex login", async () => {
    expect(await homes()).toBe(homesBefore.replace("/home/wizard/code drwxrwxr-x", "/home/wizard/code drwxrwx---"));
    for (const user of Object.keys(USERS))
      expect(await vm.stat(`/home/${user}/.codex/auth.json`)).toMatchObject({
        type: "symlink",
        linkTarget: "/opt/codex-shared/auth.json",
      });
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
    const daves = () =>
      sh(
        "find /home/dave/.kube /home/dave/.codex -printf '%p %M %u %l\\n' | sort; sha256sum /home/dave/.kube/config /home/dave/.codex/AGENTS.md",
      );
    const daveBefore = await daves();
    expect(daveBefore).toContain("/home/dave/.kube/config -rw------- dave");

    // alice, as herself, on the box just built: her ~/.kube pointed at root's, her ~/.codex at a folder under /etc.
    await vm.exec("install -d -m 0700 /root/.kube", { check: true });
    await vm.exec(
      [
        "runuser",
        "-u",
        "alice",
        "--",
        "sh",
        "-c",
        "cd && rm -rf .kube .codex && ln -s /root/.kube .kube && ln -s /etc/sudoers.d .codex",
      ],
      { check: true },
    );
    const links = [
      "alice: /home/alice/.kube is a link to /root/.kube: not followed",
      "alice: /home/alice/.codex is a link to /etc/sudoers.d: not followed",
    ];
    // Everything under /etc, /root, /usr and /var/lib with owner, mode and content, but systemd's own state (timer stamps).
    const outside = () =>
      sh(
        "find /etc /root /usr /var/lib -xdev -path /var/lib/systemd -prune -o -printf '%p %M %u %g %s %l\\n' | sort; find /etc /root /usr /var/lib -xdev -path /var/lib/systemd -prune -o -type f -exec sha256sum {} + | sort",
      );
    // What alice owns outside the homes: her t3 database copies (/var/backups/t3-state/alice, hers by design) and her own temporary files.
    const alices = () =>
      sh(
        "find / -xdev \\( -path /home -o -path /tmp -o -path /var/tmp -o -path /var/backups/t3-state/alice \\) -prune -o -user alice -print | sort",
      );
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
