// The shared logins and offboarding on a booted box of the test release (systemd as PID
// 1), checked from outside: the Claude token that vault-tokens stages
// reaches a non-admin's .env once (never over their own login or a token
// they set), their instance gets it at its idle restart, no byte of it is
// printed; the Codex login through codex-shared and a link; the AGENTS.md
// mirror; and a user dropped from the roster cut at once, then offboarded
// by name.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENTS_HEADER } from "../stages/logins.ts";
import { BUILDER_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { installInstanceLayer } from "./support/harness/instance-layer.ts";
import { buildIn, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";
import { startVaultStandIn, type VaultStandIn } from "./support/stand-ins/vault.ts";

const INPUTS = "/tmp/inputs";
const STAGES = "vault-tokens,users,offboarding,logins,instances";
const TOKEN = "hvs.logins-stand-in-token";
const OAUTH = "sk-ant-oat01-shared-logins-5e6f";
const AUTH_JSON = '{"tokens":{"access_token":"codex-shared-logins-7a8b"}}\n';
const users = (names: string[]) => {
  const all: Record<string, Record<string, unknown>> = {
    wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
    alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
    bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "power-user" },
    carol: { authentik_user: "carol.c", k8s_user: "ccarlsen", tier: "power-user" },
    dave: { authentik_user: "dave.d", k8s_user: "ddavis", tier: "power-user" },
  };
  return JSON.stringify({ users: Object.fromEntries(names.map((n) => [n, all[n]])) });
};
// t3 serve as a stand-in that only listens (what the t3 stage installs).
const T3_STAND_IN = `#!/usr/local/bin/node
const args = process.argv.slice(2);
require("node:http").createServer((q, r) => r.end("ok")).listen(Number(args[args.indexOf("--port") + 1]), "127.0.0.1");
`;

describe("logins and offboarding on a booted box of the test release", () => {
  let vault: VaultStandIn;
  let vm: DevvmContainer;
  let withoutVault: BuildRun;
  let first: BuildRun;
  const vaultEnv = () => ({ VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN });
  const build = async (env: Record<string, string>, ...args: string[]) => {
    const run = await buildIn(vm, env, "--inputs", INPUTS, ...args);
    process.stderr.write(`build ${args.join(" ")}: exit ${run.exitCode}\n${run.log}`);
    return run;
  };
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const setRoster = (names: string[]) =>
    vm.exec(["sh", "-c", `printf %s "$R" > ${INPUTS}/roster.yaml`], { check: true, env: { R: users(names) } });
  const mainPid = (user: string) => sh(`systemctl show -P MainPID t3-serve@${user}.service`);
  const environ = async (user: string) =>
    (await sh(`tr '\\0' '\\n' < /proc/${await mainPid(user)}/environ`)).split("\n");

  beforeAll(async () => {
    vault = await startVaultStandIn(TOKEN, {
      "secret/workstation": { claude_oauth_token: OAUTH, codex_shared_auth_json: AUTH_JSON },
    });
    vm = await startFreshVm();
    await vm.exec("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo", { check: true });
    await installInstanceLayer(vm, T3_STAND_IN);
    await vm.exec(
      `mkdir ${INPUTS} && cp ${PROJECT_DIR_IN_CONTAINER}/packages.txt ${PROJECT_DIR_IN_CONTAINER}/pins.json ${INPUTS}/`,
      { check: true },
    );
    await setRoster(["wizard", "alice", "bob", "carol", "dave"]);
    // bob has his own Claude login; carol set a token by hand; dave has his own Codex login and AGENTS.md.
    await vm.exec(
      [
        "set -e",
        "for u in bob carol dave; do useradd -m -s /bin/bash $u; done",
        "install -d -o bob -g bob /home/bob/.claude && echo '{}' > /home/bob/.claude/.credentials.json",
        "install -d -m 0755 /etc/t3-serve && printf 'T3_PORT=3775\\nCLAUDE_CODE_OAUTH_TOKEN=carols-own-token\\n' > /etc/t3-serve/carol.env",
        "install -d -o dave -g dave /home/dave/.codex && echo '{\"own\":true}' > /home/dave/.codex/auth.json && echo '# my agents' > /home/dave/.codex/AGENTS.md && chown dave:dave /home/dave/.codex/*",
      ].join("\n"),
      { check: true },
    );
    // First without Vault: nothing is staged, the instances start without a token.
    withoutVault = await build({}, "--stage", STAGES);
    first = await build(vaultEnv(), "--stage", STAGES);
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await vault?.[Symbol.asyncDispose]();
  });

  it("builds", () => {
    expect(withoutVault.exitCode, withoutVault.log).toBe(0);
    expect(first.exitCode, first.log).toBe(0);
  });

  it("adds the shared Claude token once to a non-admin without a login, never over someone's own", async () => {
    const alice = await vm.readFile("/etc/t3-serve/alice.env");
    expect(alice).toBe(`T3_PORT=3773\nCLAUDE_CODE_OAUTH_TOKEN=${OAUTH}\n`);
    expect(await vm.readFile("/etc/t3-serve/bob.env")).toBe("T3_PORT=3774\n");
    expect(await vm.readFile("/etc/t3-serve/carol.env")).toBe(
      "T3_PORT=3775\nCLAUDE_CODE_OAUTH_TOKEN=carols-own-token\n",
    );
    expect(await vm.readFile("/etc/t3-serve/wizard.env")).not.toContain("CLAUDE_CODE_OAUTH_TOKEN");
    expect(await vm.stat("/etc/t3-serve/alice.env")).toMatchObject({ mode: "0600", owner: "root" });
  });

  it("restarts the instance, idle, so it runs with the token", async () => {
    expect(first.log).toContain("restart t3-serve@alice.service");
    expect(await environ("alice")).toContain(`CLAUDE_CODE_OAUTH_TOKEN=${OAUTH}`);
    expect(await environ("bob")).not.toContain(`CLAUDE_CODE_OAUTH_TOKEN=${OAUTH}`);
  });

  it("never prints or records a secret", async () => {
    for (const secret of [OAUTH, TOKEN, "codex-shared-logins-7a8b"]) {
      expect(first.log).not.toContain(secret);
      expect(JSON.stringify(first.report)).not.toContain(secret);
    }
    const output = await vm.exec(["grep", "-rlF", "-e", OAUTH, "-e", TOKEN, `${PROJECT_DIR_IN_CONTAINER}/output`]);
    expect(output.stdout).toBe("");
  });

  it("gives the Codex login through codex-shared and a link, leaving a user's own file alone", async () => {
    const read = await vm.exec(["runuser", "-u", "alice", "--", "cat", "/home/alice/.codex/auth.json"]);
    expect(read.exitCode, read.stderr).toBe(0);
    expect(read.stdout).toBe(AUTH_JSON);
    expect(await vm.stat("/home/alice/.codex/auth.json")).toMatchObject({
      type: "symlink",
      linkTarget: "/opt/codex-shared/auth.json",
    });
    expect((await sh("id -nG alice")).split(" ")).toContain("codex-shared");
    expect(await vm.readFile("/home/dave/.codex/auth.json")).toBe('{"own":true}\n');
  });

  it("mirrors the org's rules into ~/.codex/AGENTS.md under its header, never touching a user's own", async () => {
    const rules = JSON.parse(await vm.readFile(`${PROJECT_DIR_IN_CONTAINER}/files/claude-code/managed-settings.json`))
      .claudeMd as string;
    expect(await vm.readFile("/home/alice/.codex/AGENTS.md")).toBe(`${AGENTS_HEADER}\n\n${rules.trimEnd()}\n`);
    expect(await vm.stat("/home/alice/.codex/AGENTS.md")).toMatchObject({ owner: "alice" });
    expect(await vm.readFile("/home/dave/.codex/AGENTS.md")).toBe("# my agents\n");
  });

  it("a second run adds nothing", async () => {
    const second = await build(vaultEnv(), "--stage", STAGES);
    expect(second.exitCode, second.log).toBe(0);
    expect(
      second.report.stages.filter((s) => s.outcome !== "unchanged" && s.outcome !== "skipped").map((s) => s.name),
    ).toEqual([]);
    expect(await vm.readFile("/etc/t3-serve/alice.env")).toBe(`T3_PORT=3773\nCLAUDE_CODE_OAUTH_TOKEN=${OAUTH}\n`);
  });

  it("follows a change of the rules in the mirror, and still never in a user's own file", async () => {
    const settings = `${PROJECT_DIR_IN_CONTAINER}/files/claude-code/managed-settings.json`;
    await vm.exec(
      `cp ${settings} /tmp/settings.json && node -e 'const f=process.argv[1];const s=JSON.parse(require("fs").readFileSync(f));s.claudeMd+="\\n- A new rule.";require("fs").writeFileSync(f,JSON.stringify(s,null,2)+"\\n")' ${settings}`,
      { check: true },
    );
    const changed = await build(vaultEnv(), "--stage", "logins");
    await vm.exec(`cp /tmp/settings.json ${settings}`, { check: true });
    expect(changed.exitCode, changed.log).toBe(0);
    expect(await vm.readFile("/home/alice/.codex/AGENTS.md")).toMatch(/- A new rule\.\n$/);
    expect(await vm.readFile("/home/dave/.codex/AGENTS.md")).toBe("# my agents\n");
  });

  it("cuts a user dropped from the roster at once, shown by --plan first; home and account kept", async () => {
    await setRoster(["wizard", "alice", "bob", "dave"]);
    const plan = await build(vaultEnv(), "--stage", STAGES, "--plan");
    expect(plan.exitCode).toBe(3);
    expect(plan.log).toContain("cut carol (no longer in roster.yaml)");
    expect(await sh("systemctl is-active t3-serve@carol.service")).toBe("active");

    const cut = await build(vaultEnv(), "--stage", STAGES);
    expect(cut.exitCode, cut.log).toBe(0);
    expect((await vm.exec("systemctl is-active t3-serve@carol.service")).stdout.trim()).toBe("inactive");
    expect((await vm.exec("systemctl is-enabled t3-serve@carol.service")).stdout.trim()).toBe("disabled");
    expect((await sh("passwd -S carol")).split(" ")[1]).toBe("L");
    expect(await vm.readFile("/etc/ttyd-user-map")).not.toContain("carol");
    expect(await vm.readFile("/etc/t3-serve/dispatch.json")).not.toContain("carol");
    expect(await sh("test -d /home/carol && getent passwd carol | cut -d: -f1")).toBe("carol");
    const again = await build(vaultEnv(), "--stage", STAGES);
    expect(again.report.stages.find((s) => s.name === "offboarding")?.outcome).toBe("unchanged");
  });

  it("offboards a cut user only when named: --plan lists it, a user still in the roster is refused", async () => {
    const offboard = (...args: string[]) =>
      vm.exec([...BUILDER_IN_CONTAINER, "offboard", ...args, "--inputs", INPUTS], {
        workingDir: PROJECT_DIR_IN_CONTAINER,
      });
    const refused = await offboard("alice");
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain("alice is still in roster.yaml");
    const plan = await offboard("carol", "--plan");
    expect(plan.exitCode, plan.stderr).toBe(3);
    expect(plan.stderr).toMatch(
      /archive \/home\/carol to \/var\/backups\/devvm-offboarded\/carol-\d{8}T\d{6}Z\.tar\.gz/,
    );
    expect(plan.stderr).toContain("delete the account carol (userdel)");
    expect(await sh("getent passwd carol | cut -d: -f1")).toBe("carol");

    const done = await offboard("carol");
    expect(done.exitCode, done.stderr).toBe(0);
    expect((await vm.exec("getent passwd carol")).exitCode).toBe(2);
    expect((await vm.exec("test -e /home/carol")).exitCode).toBe(1);
    const archive = await sh("ls /var/backups/devvm-offboarded/");
    expect(archive).toMatch(/^carol-\d{8}T\d{6}Z\.tar\.gz$/);
    expect(await vm.stat(`/var/backups/devvm-offboarded/${archive}`)).toMatchObject({ mode: "0600", owner: "root" });
    expect(await sh(`tar -tzf /var/backups/devvm-offboarded/${archive} | sort | head -3`)).toContain("carol/");
    expect((await offboard("carol")).exitCode).toBe(2);
  });
});
