// Stages 11 and 12 on a booted box of the test release (systemd as PID 1): secrets staged
// from a Vault stand-in without ever showing them, the helpers, the sudoers
// drop-in (and a malformed one refused), the units really running, and a
// rerun that changes and restarts nothing. Checked from outside the builder.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingVariables } from "../lib/inputs/settings.ts";
import { PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { startFreshVm } from "./support/harness/build-in-vm.ts";
import { GO_CACHE_IN_BOX } from "./support/harness/go-cache.ts";
import {
  AUTH_JSON,
  buildStages,
  type Build,
  OAUTH,
  prepareBox,
  SECRETS,
  STAGES,
  START_SAMPLER,
  SUDOERS_SOURCE,
  TOKEN,
  VAULT_SECRETS,
} from "./support/harness/service-layer-box.ts";
import { startGoProxyStandIn, type GoProxyStandIn } from "./support/stand-ins/go-proxy.ts";
import { startVaultStandIn, type VaultStandIn } from "./support/stand-ins/vault.ts";

describe("the service layer on a booted box of the test release", () => {
  let vm: DevvmContainer;
  let vault: VaultStandIn;
  let goProxy: GoProxyStandIn;
  let first: Build;
  let firstGoProxyRequests: string[];
  let sampled: string;
  const env = () => ({
    VAULT_ADDR: vault.address,
    VAULT_TOKEN: TOKEN,
    [settingVariables.t3DispatchSource]: `${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-dispatch`,
    [settingVariables.goProxy]: goProxy.url,
    [settingVariables.goCache]: GO_CACHE_IN_BOX,
  });

  const build = (stages: string, extraEnv: Record<string, string> = env(), ...args: string[]) =>
    buildStages(vm, stages, extraEnv, ...args);
  const outcomes = (b: Build) => Object.fromEntries(b.report.stages.map((s) => [s.name, s.outcome]));
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();

  beforeAll(async () => {
    vault = await startVaultStandIn(TOKEN, VAULT_SECRETS);
    goProxy = await startGoProxyStandIn();
    vm = await startFreshVm();
    await prepareBox(vm);
    // Every command line of every process, sampled while the build runs (bash builtins only: no fork per sample).
    await vm.exec(START_SAMPLER);
    first = await build(STAGES);
    firstGoProxyRequests = goProxy.requests().map((r) => `${r.method} ${r.path} ${r.status}`);
    await vm.exec("touch /tmp/stop-sampler; sleep 0.3");
    sampled = await vm.readFile("/tmp/cmdlines");
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await vault?.[Symbol.asyncDispose]();
    await goProxy?.stop();
  });

  it("builds every stage", () => {
    expect(first.exitCode, first.log).toBe(0);
    expect(outcomes(first)).toMatchObject({
      "vault-tokens": "changed",
      "service-helpers": "changed",
      sudoers: "changed",
      "builder-install": "changed",
      units: "changed",
    });
  });

  it("stages the tokens with exact owner, group and mode", async () => {
    expect(await vm.stat("/etc/t3-serve")).toEqual({ type: "directory", mode: "0755", owner: "root", group: "root" });
    expect(await vm.stat("/etc/t3-serve/claude-oauth-token")).toEqual({
      type: "file",
      mode: "0600",
      owner: "root",
      group: "root",
    });
    expect(await vm.stat("/opt/codex-shared")).toEqual({
      type: "directory",
      mode: "2770",
      owner: "root",
      group: "codex-shared",
    });
    expect(await vm.stat("/opt/codex-shared/auth.json")).toEqual({
      type: "file",
      mode: "0660",
      owner: "root",
      group: "codex-shared",
    });
    expect(await vm.readFile("/etc/t3-serve/claude-oauth-token")).toBe(OAUTH);
    expect(await vm.readFile("/opt/codex-shared/auth.json")).toBe(AUTH_JSON);
    expect(await sh("getent group codex-shared | cut -d: -f3")).toMatch(/^\d{3}$/);
  });

  it("never shows a secret: not in output/, not in what the build printed, not on a command line", async () => {
    const output = await vm.exec([
      "grep",
      "-rlF",
      ...SECRETS.flatMap((s) => ["-e", s]),
      `${PROJECT_DIR_IN_CONTAINER}/output`,
    ]);
    expect(output.stdout).toBe("");
    expect(output.exitCode).toBe(1);
    for (const secret of SECRETS) {
      expect(first.log).not.toContain(secret);
      expect(first.stdout).not.toContain(secret);
      expect(sampled).not.toContain(secret);
    }
    // The sampler did see the build and its children (the short-lived ones, visudo or systemctl, it may miss).
    expect(sampled).toMatch(/devvm\.mjs --json --stage/);
    expect(sampled).toMatch(/go build -trimpath/);
    process.stderr.write(`${sampled.split("\n").length} distinct command lines sampled during the build\n`);
    const manifest = await vm.readFile(`${PROJECT_DIR_IN_CONTAINER}/output/manifest.json`);
    expect(JSON.parse(manifest).paths).toContainEqual({
      path: "/etc/t3-serve/claude-oauth-token",
      stage: "vault-tokens",
      type: "file",
      mode: "0600",
      owner: "root",
      group: "root",
      secret: true,
    });
  });

  it("installs the helpers and the t3-dispatch account and binary", async () => {
    for (const name of ["t3-mint", "t3-state-backup", "t3-dispatch"])
      expect(await vm.stat(`/usr/local/bin/${name}`)).toEqual({
        type: "file",
        mode: "0755",
        owner: "root",
        group: "root",
      });
    expect(await sh("getent passwd t3-dispatch | cut -d: -f6,7")).toBe("/nonexistent:/usr/sbin/nologin");
    expect((await vm.exec("test -e /nonexistent")).exitCode).toBe(1);
  });

  it("builds t3-dispatch with Go 1.22 or newer, its module fetched through DEVVM_GOPROXY and checked by go.sum, leaving no module cache", async () => {
    // The module zip and go.mod, from the stand-in; never a checksum database.
    expect(firstGoProxyRequests).toEqual(
      expect.arrayContaining([
        "GET /example.invalid/%21org/signon/@v/v1.0.0.mod 200",
        "GET /example.invalid/%21org/signon/@v/v1.0.0.zip 200",
      ]),
    );
    expect(firstGoProxyRequests.filter((r) => r.includes("/sumdb/"))).toEqual([]);
    expect(await sh("ls -d /tmp/devvm-go-* /root/go /root/.cache/go-build /root/.config/go 2>/dev/null; true")).toBe(
      "",
    );
    // A module cache keeps a module as <path with ! for capitals>@<version>: none anywhere but the fixture's source.
    expect(
      await sh(
        `find / -xdev -path ${PROJECT_DIR_IN_CONTAINER} -prune -o -name 'signon@v1.0.0' -print 2>/dev/null; true`,
      ),
    ).toBe("");
    // Last: go itself, run as root here, writes its telemetry under ~/.config/go.
    expect(await sh("go version")).toMatch(/^go version go1\.(2[2-9]|[3-9]\d)/);
  });

  it("lets t3-dispatch run only t3-mint as root, and t3-mint only for a mapped user", async () => {
    expect(await vm.stat("/etc/sudoers.d/t3-autopair")).toEqual({
      type: "file",
      mode: "0440",
      owner: "root",
      group: "root",
    });
    const listed = await sh("sudo -l -U t3-dispatch");
    const commands = listed
      .split(/may run the following commands on [^:]+:\n/)[1]!
      .trim()
      .split("\n");
    expect(commands).toEqual(["(root) NOPASSWD: /usr/local/bin/t3-mint"]);

    const asDispatch = (command: string) =>
      vm.exec(`setpriv --reuid=t3-dispatch --regid=t3-dispatch --init-groups ${command}`);
    const minted = await asDispatch("sudo -n /usr/local/bin/t3-mint alice");
    expect(minted.exitCode, minted.stderr).toBe(0);
    expect(JSON.parse(minted.stdout)).toEqual({
      credential: "stand-in",
      uid: Number(await sh("id -u alice")),
      args: "auth pairing create --base-dir /home/alice/.t3 --ttl 5m --json",
    });
    for (const refused of ["bob", "root", "'../alice'", "'alice bob'"]) {
      const result = await asDispatch(`sudo -n /usr/local/bin/t3-mint ${refused}`);
      expect(result.exitCode, refused).toBe(2);
    }
    expect((await asDispatch("sudo -n /bin/true")).exitCode).toBe(1);
  });

  it("runs t3-dispatch as its account, and schedules the three timers without running the t3 enforcer", async () => {
    expect(await sh("systemctl is-active t3-dispatch")).toBe("active");
    expect(await sh("stat -c %U /proc/$(systemctl show -P MainPID t3-dispatch)")).toBe("t3-dispatch");
    for (const timer of ["devvm-t3-pin.timer", "t3-state-backup.timer", "devvm-reconcile.timer"]) {
      expect(await sh(`systemctl is-enabled ${timer}`)).toBe("enabled");
      expect(await sh(`systemctl is-active ${timer}`)).toBe("active");
    }
    const timers = await sh("systemctl list-timers --all --no-pager --no-legend");
    process.stderr.write(`${timers}\n`);
    for (const unit of ["devvm-t3-pin.timer", "t3-state-backup.timer"]) {
      expect(timers.split("\n").find((l) => l.includes(unit)) ?? "", unit).toMatch(
        /^\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/,
      );
    }
    expect(timers).toContain("devvm-reconcile.timer");
    // Started, with an old stamp, and still never run: no unplanned update.
    expect(await sh("systemctl show -P ExecMainStartTimestampMonotonic devvm-t3-pin.service")).toBe("0");
    for (const unit of ["t3-serve@.service", "t3-dispatch.service", "devvm-t3-pin.timer"])
      expect(await vm.stat(`/etc/systemd/system/${unit}`)).toMatchObject({ mode: "0644", owner: "root" });
  });

  it("runs t3 serve for a user, as the user, on the port of its env file, with ~/.t3", async () => {
    await vm.exec("echo T3_PORT=38123 > /etc/t3-serve/alice.env && systemctl start t3-serve@alice.service", {
      check: true,
    });
    let said = "";
    for (let i = 0; i < 50 && !said.includes("credential"); i++) {
      said = (await vm.exec("journalctl -u t3-serve@alice.service -o cat --no-pager")).stdout;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const uid = await sh("id -u alice");
    expect(said).toContain(
      `{"credential":"stand-in","uid":${uid},"args":"serve --host 127.0.0.1 --port 38123 --base-dir /home/alice/.t3"}`,
    );
  });

  it("installs the builder for the timers, runnable by the pinned node", async () => {
    const installed = await vm.exec("/usr/local/bin/node /opt/devvm/builder/dist/devvm.mjs --list");
    expect(installed.exitCode, installed.stderr).toBe(0);
    expect(installed.stdout).toMatch(/^units\s/m);
  });

  it("backs up a mapped user's state online, as that user, keeping the newest 14", async () => {
    await vm.exec(
      "install -d -o alice -g alice -m 0700 /var/backups/t3-state/alice && for d in 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15; do runuser -u alice -- touch /var/backups/t3-state/alice/state-202001${d}T000000Z.sqlite; done",
      { check: true },
    );
    const run = await vm.exec("systemctl start t3-state-backup.service");
    expect(run.exitCode, await sh("journalctl -u t3-state-backup.service --no-pager | tail -20")).toBe(0);
    const files = (await sh("ls /var/backups/t3-state/alice")).split("\n");
    expect(files).toHaveLength(14);
    expect(files).not.toContain("state-20200102T000000Z.sqlite");
    const newest = files.sort().at(-1)!;
    expect(await vm.stat(`/var/backups/t3-state/alice/${newest}`)).toMatchObject({ type: "file", owner: "alice" });
    expect(await sh(`sqlite3 /var/backups/t3-state/alice/${newest} 'select x from t'`)).toBe("42");
    expect((await vm.exec("test -e /var/backups/t3-state/bob")).exitCode).toBe(1);
  });

  it("a second build changes nothing and restarts nothing", async () => {
    const pid = await sh("systemctl show -P MainPID t3-dispatch");
    const second = await build(STAGES);
    expect(second.exitCode, second.log).toBe(0);
    expect(Object.values(outcomes(second)).filter((o) => o !== "unchanged")).toEqual([]);
    expect(await sh("systemctl show -P MainPID t3-dispatch")).toBe(pid);
  });

  it("refuses a tampered module: the build fails naming go.sum's mismatch and the proxy setting, and installs nothing", async () => {
    await vm.exec("mv /usr/local/bin/t3-dispatch /tmp/t3-dispatch.kept", { check: true });
    goProxy.serveTampered(true);
    let tampered: Build;
    try {
      tampered = await build("service-helpers");
    } finally {
      goProxy.serveTampered(false);
    }
    expect(tampered.exitCode).toBe(1);
    const stage = tampered.report.stages.find((s) => s.name === "service-helpers");
    expect(stage).toMatchObject({
      outcome: "failed",
      error: {
        message: expect.stringMatching(
          /^go build refused a module of \S+\/fixtures\/t3-dispatch: checksum mismatch\nverifying example.invalid\/Org\/signon@v1.0.0: checksum mismatch\n\tdownloaded: +h1:\S+\n\tgo.sum: +h1:\S+\nSECURITY ERROR$/,
        ),
        hint: `the module DEVVM_GOPROXY=${goProxy.url} served is not the one ${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-dispatch/go.sum records: check that proxy (and DEVVM_GOPROXY); never edit go.sum to match what it served`,
      },
    });
    expect(tampered.log).toContain("SECURITY ERROR");
    expect(tampered.log).toContain("hint: the module DEVVM_GOPROXY=");
    expect((await vm.exec("test -e /usr/local/bin/t3-dispatch")).exitCode).toBe(1);
    expect(await sh("ls -d /tmp/devvm-go-* 2>/dev/null; true")).toBe("");
    expect((await vm.exec("test -e /var/lib/devvm/pending-restarts.json")).exitCode).toBe(1);
    await vm.exec("mv /tmp/t3-dispatch.kept /usr/local/bin/t3-dispatch", { check: true });
  });

  it("refuses a malformed sudoers drop-in and keeps sudo working; a restart due then is done by the next build", async () => {
    const before = await sh("ls -A /etc/sudoers.d; sha256sum /etc/sudoers.d/t3-autopair");
    const pid = await sh("systemctl show -P MainPID t3-dispatch");
    await vm.exec(
      `cp ${SUDOERS_SOURCE} /tmp/sudoers.good && echo 't3-dispatch ALL=(root) NOPASSWD /usr/local/bin/t3-mint' > ${SUDOERS_SOURCE} && rm /usr/local/bin/t3-dispatch`,
      { check: true },
    );
    const broken = await build(STAGES);
    expect(broken.exitCode).toBe(1);
    expect(outcomes(broken)).toMatchObject({
      "service-helpers": "changed",
      sudoers: "failed",
      "builder-install": "not-run",
      units: "not-run",
    });
    expect(broken.log).toMatch(
      /visudo refused the new \/etc\/sudoers.d\/t3-autopair; the live file was left as it was:\n.*syntax error/,
    );
    expect(await sh("ls -A /etc/sudoers.d; sha256sum /etc/sudoers.d/t3-autopair")).toBe(before);
    expect((await vm.exec("sudo -n true")).exitCode).toBe(0);
    expect(await sh("cat /var/lib/devvm/pending-restarts.json")).toBe('["t3-dispatch.service"]');
    expect(await sh("systemctl show -P MainPID t3-dispatch")).toBe(pid);

    await vm.exec(`cp /tmp/sudoers.good ${SUDOERS_SOURCE}`, { check: true });
    const fixed = await build(STAGES);
    expect(fixed.exitCode, fixed.log).toBe(0);
    expect(fixed.log).toContain("restart t3-dispatch.service");
    expect(await sh("systemctl show -P MainPID t3-dispatch")).not.toBe(pid);
    expect(await sh("systemctl is-active t3-dispatch")).toBe("active");
    expect((await vm.exec("test -e /var/lib/devvm/pending-restarts.json")).exitCode).toBe(1);
  });

  it("fails the units stage with the journal when t3-dispatch does not stay up, and starts it once it can", async () => {
    await vm.exec("systemctl stop t3-dispatch && mv /etc/t3-serve/dispatch.json /tmp/dispatch.json", { check: true });
    const down = await build("units");
    expect(down.exitCode).toBe(1);
    expect(outcomes(down).units).toBe("failed");
    expect(down.log).toMatch(
      /t3-dispatch.service did not stay up after starting:\n(.*\n)*.*cannot start without the user map/,
    );
    await vm.exec("mv /tmp/dispatch.json /etc/t3-serve/dispatch.json && systemctl reset-failed t3-dispatch", {
      check: true,
    });
    const up = await build("units");
    expect(up.exitCode, up.log).toBe(0);
    expect(up.log).toContain("start t3-dispatch.service");
    expect(await sh("systemctl is-active t3-dispatch")).toBe("active");
  });

  it("treats a refused Vault token as a warning that leaves the staged files, and as an error with --strict", async () => {
    const staged = await sh("sha256sum /etc/t3-serve/claude-oauth-token /opt/codex-shared/auth.json");
    const wrong = { ...env(), VAULT_TOKEN: "hvs.wrong-token-for-the-stand-in" };
    const warned = await build("vault-tokens", wrong);
    expect(warned.exitCode, warned.log).toBe(0);
    expect(warned.report.stages.find((s) => s.name === "vault-tokens")).toMatchObject({
      outcome: "skipped",
      reason: expect.stringMatching(/^warning: Vault refused the token .*403/),
    });
    expect(await sh("sha256sum /etc/t3-serve/claude-oauth-token /opt/codex-shared/auth.json")).toBe(staged);
    const strict = await build("vault-tokens", wrong, "--strict");
    expect(strict.exitCode).toBe(1);
    expect(outcomes(strict)["vault-tokens"]).toBe("failed");
  });
});
