// The shared logins and offboarding on a booted box of the test release (systemd as PID
// 1), checked from outside: the Claude token that vault-tokens stages
// reaches a non-admin's .env once (never over their own login or a token
// they set), their instance gets it at its idle restart, no byte of it is
// printed; the Codex login through codex-shared and a link; the AGENTS.md
// mirror; each user's own login (claude-auth-sync@USER with a stand-in
// claude that answers as the API would, OK or a 401, by the credentials it
// finds): a setup token from Vault in bash, zsh and t3, a working login
// merged into Vault beside its neighbours, a broken one restored, another
// user's Vault token refused, the shared token leaving the .env of a user
// with their own login; and a user dropped from the roster cut at once
// (their sync stopped too), then offboarded by name.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENTS_HEADER } from "../stages/logins.ts";
import { BUILDER_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { installInstanceLayer } from "./support/harness/instance-layer.ts";
import { buildIn, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";
import { startVaultStandIn, type VaultStandIn } from "./support/stand-ins/vault.ts";

const INPUTS = "/tmp/inputs";
const STAGES = "login-shells,vault-tokens,users,offboarding,logins,instances,claude-auth";
const TOKEN = "hvs.logins-stand-in-token";
const OAUTH = "sk-ant-oat01-shared-logins-5e6f";
const AUTH_JSON = '{"tokens":{"access_token":"codex-shared-logins-7a8b"}}\n';
const users = (names: string[]) => {
  const all: Record<string, Record<string, unknown>> = {
    wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
    alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
    bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "power-user" },
    carol: { authentik_user: "carol.c", k8s_user: "ccarlsen", tier: "power-user" },
    dave: { authentik_user: "dave.d", k8s_user: "ddavis", tier: "power-user", claude_auth: false },
  };
  return JSON.stringify({ users: Object.fromEntries(names.map((n) => [n, all[n]])) });
};
const ALICE_SETUP = "sk-ant-oat01-alice-own-setup-9c0d";
const NEIGHBOURS = { note: "kept by hand, not the sync's", nested: { list: [1, "two", { three: 3 }], empty: "" } };
const BOB_LOGIN = { accessToken: "good-bob-access-1a2b", refreshToken: "bob-refresh-3c4d", expiresAt: 1893456000000 };
const CAROL_SAVED = {
  accessToken: "good-carol-saved-5e6f",
  refreshToken: "carol-refresh-7a8b",
  expiresAt: 1893456000001,
};
const MCP = { "some-server": { accessToken: "mcp-never-backed-up" } };
const userPath = (user: string) => `secret/workstation/claude-users/${user}`;
// A stand-in for claude (Anthropic's API is not reachable here): answers OK
// when ~/.claude/.credentials.json holds an access token starting "good", else
// fails as a 401 would; records its arguments.
const CLAUDE_STAND_IN = `#!/usr/local/bin/node
const fs = require("node:fs");
const home = require("node:os").homedir();
fs.appendFileSync(home + "/.claude/stand-in-calls", JSON.stringify(process.argv.slice(2)) + "\\n");
let token = "";
try { token = JSON.parse(fs.readFileSync(home + "/.claude/.credentials.json", "utf8")).claudeAiOauth.accessToken; } catch {}
if (token.startsWith("good")) { console.log("OK"); process.exit(0); }
console.error('API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"OAuth token has expired."}}');
process.exit(1);
`;
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
    await vm.exec("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo zsh", {
      check: true,
    });
    await installInstanceLayer(vm, T3_STAND_IN);
    // What service-helpers and units would install: the sync program and its units.
    await vm.exec(
      [
        `install -m 0755 ${PROJECT_DIR_IN_CONTAINER}/files/service/claude-auth-sync /usr/local/bin/`,
        `install -m 0644 ${PROJECT_DIR_IN_CONTAINER}/files/service/units/claude-auth-sync@.service ${PROJECT_DIR_IN_CONTAINER}/files/service/units/claude-auth-sync@.timer /etc/systemd/system/`,
        "systemctl daemon-reload",
      ].join(" && "),
      { check: true },
    );
    await vm.exec(
      `mkdir ${INPUTS} && cp ${PROJECT_DIR_IN_CONTAINER}/packages.txt ${PROJECT_DIR_IN_CONTAINER}/pins.json ${INPUTS}/`,
      { check: true },
    );
    await setRoster(["wizard", "alice", "bob", "carol", "dave"]);
    // bob has his own Claude login (it works); carol set a token by hand and has a login that has expired;
    // dave has his own Codex login and AGENTS.md. bob and carol have the stand-in claude on their PATH.
    await vm.exec(
      [
        "set -e",
        "for u in bob carol dave; do useradd -m -s /bin/bash $u; done",
        `install -d -m 0700 -o bob -g bob /home/bob/.claude && printf %s '${JSON.stringify({ claudeAiOauth: BOB_LOGIN, mcpOAuth: MCP })}' > /home/bob/.claude/.credentials.json && chown bob:bob /home/bob/.claude/.credentials.json`,
        `install -d -m 0700 -o carol -g carol /home/carol/.claude && printf %s '${JSON.stringify({ claudeAiOauth: { accessToken: "expired-carol" }, mcpOAuth: MCP })}' > /home/carol/.claude/.credentials.json && chown carol:carol /home/carol/.claude/.credentials.json`,
        'for u in bob carol; do install -d -o $u -g $u /home/$u/.local /home/$u/.local/bin && printf %s "$CLAUDE" > /home/$u/.local/bin/claude && chmod 755 /home/$u/.local/bin/claude && chown $u:$u /home/$u/.local/bin/claude; done',
        "install -d -m 0755 /etc/t3-serve && printf 'T3_PORT=3775\\nCLAUDE_CODE_OAUTH_TOKEN=carols-own-token\\n' > /etc/t3-serve/carol.env",
        "install -d -o dave -g dave /home/dave/.codex && echo '{\"own\":true}' > /home/dave/.codex/auth.json && echo '# my agents' > /home/dave/.codex/AGENTS.md && chown dave:dave /home/dave/.codex/*",
      ].join("\n"),
      { check: true, env: { CLAUDE: CLAUDE_STAND_IN } },
    );
    vault.setSecret(userPath("bob"), NEIGHBOURS);
    vault.setSecret(userPath("carol"), { ...NEIGHBOURS, claudeAiOauth: CAROL_SAVED });
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

  const sync = async (user: string) => {
    const started = await vm.exec(`systemctl start claude-auth-sync@${user}.service`);
    const journal = await sh(`journalctl -q -o cat -u claude-auth-sync@${user}.service`);
    return { exitCode: started.exitCode, journal };
  };
  const asUser = (user: string, shell: string) =>
    sh(
      `runuser -u ${user} -- env -i HOME=/home/${user} PATH=/usr/bin:/bin ${shell} 'printf "%s|%s" "$CLAUDE_CODE_OAUTH_TOKEN" "$PATH"'`,
    );

  it("mints each user's own Vault token once, 0600, and runs their sync timer; claude_auth: false leaves it off", async () => {
    const minted = [...vault.tokens.values()].map((t) => t.display_name).sort();
    expect(minted).toEqual(["alice", "bob", "carol", "wizard"].map((u) => `token-devvm-claude-auth-${u}`));
    expect(await vm.stat("/home/alice/.config/claude-auth-sync/vault-token")).toMatchObject({
      mode: "0600",
      owner: "alice",
    });
    expect(vault.tokens.has((await vm.readFile("/home/alice/.config/claude-auth-sync/vault-token")).trim())).toBe(true);
    for (const dir of [".config/claude-auth-sync", ".local/state/claude-auth-sync", ".claude"])
      expect(await vm.stat(`/home/alice/${dir}`)).toMatchObject({ mode: "0700", owner: "alice" });
    expect(await sh("systemctl is-enabled claude-auth-sync@alice.timer")).toBe("enabled");
    expect(await sh("systemctl is-active claude-auth-sync@alice.timer")).toBe("active");
    expect((await vm.exec("systemctl is-enabled claude-auth-sync@dave.timer")).stdout.trim()).toBe("disabled");
    expect((await vm.exec("test -e /home/dave/.config/claude-auth-sync/vault-token")).exitCode).toBe(1);
    const unit = await sh(
      "systemctl show -p User -p NoNewPrivileges -p PrivateTmp -p ProtectSystem -p ProtectHome claude-auth-sync@bob.service",
    );
    expect(unit.split("\n").sort()).toEqual(
      ["User=bob", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict", "ProtectHome=read-only"].sort(),
    );
  });

  it("merges a working login into Vault: the neighbouring keys survive byte for byte, mcpOAuth never leaves", async () => {
    const before = vault.secret(userPath("bob"))!;
    const run = await sync("bob");
    expect(run.exitCode, run.journal).toBe(0);
    expect(run.journal).toMatch(/^user=bob OK login works; backed up to Vault/m);
    const after = vault.secret(userPath("bob"))!;
    expect(after.version).toBe(before.version + 1);
    expect(JSON.stringify({ note: after.data.note, nested: after.data.nested })).toBe(JSON.stringify(NEIGHBOURS));
    expect(after.data.claudeAiOauth).toEqual(BOB_LOGIN);
    expect(after.data.credential_expires_at_ms).toBe(BOB_LOGIN.expiresAt);
    expect(Date.now() - Date.parse(String(after.data.backed_up_at))).toBeLessThan(120_000);
    expect(JSON.stringify(after.data)).not.toContain("mcp-never-backed-up");
    const write = vault.requests.filter((r) => r.method === "POST" && r.path.endsWith("/claude-users/bob"));
    expect(write.map((r) => (r.body as { options?: { cas?: number } }).options?.cas)).toEqual([before.version]);
    expect(vault.requests.filter((r) => r.token === "token-devvm-claude-auth-bob").map((r) => r.path)).toContain(
      "/v1/auth/token/renew-self",
    );
    // The real request: the smallest model, no tools, no session saved.
    expect(JSON.parse((await vm.readFile("/home/bob/.claude/stand-in-calls")).trim().split("\n").pop()!)).toEqual([
      "-p",
      "Reply with the single word OK.",
      "--model",
      "haiku",
      "--tools",
      "",
      "--no-session-persistence",
    ]);
  });

  it("restores a broken login from Vault once and checks it again: RECOVERED", async () => {
    const run = await sync("carol");
    expect(run.exitCode, run.journal).toBe(0);
    expect(run.journal).toMatch(/^user=carol RECOVERED /m);
    const credentials = JSON.parse(await vm.readFile("/home/carol/.claude/.credentials.json"));
    expect(credentials).toEqual({ claudeAiOauth: CAROL_SAVED, mcpOAuth: MCP });
    expect(await vm.stat("/home/carol/.claude/.credentials.json")).toMatchObject({ mode: "0600", owner: "carol" });
    expect((await vm.readFile("/home/carol/.claude/stand-in-calls")).trim().split("\n")).toHaveLength(2);
    expect(JSON.stringify(vault.secret(userPath("carol"))!.data.nested)).toBe(JSON.stringify(NEIGHBOURS.nested));
  });

  it("refuses a token minted for bob in alice's sync, with nothing read or written", async () => {
    const token = "/home/alice/.config/claude-auth-sync/vault-token";
    await vm.exec(
      `cp -p ${token} /tmp/alice-token && install -m 0600 -o alice -g alice /home/bob/.config/claude-auth-sync/vault-token ${token}`,
      { check: true },
    );
    const seen = vault.requests.length;
    const run = await sync("alice");
    await vm.exec(`cp -p /tmp/alice-token ${token}`, { check: true });
    expect(run.exitCode).not.toBe(0);
    expect(run.journal).toMatch(
      /^user=alice FAIL refused the token at .*: it is not alice's .*nothing read or written$/m,
    );
    expect(vault.requests.slice(seen).map((r) => `${r.method} ${r.path} ${r.token}`)).toEqual([
      "GET /v1/auth/token/lookup-self token-devvm-claude-auth-bob",
    ]);
  });

  it("brings a setup token from Vault to bash, zsh and (after an idle restart) t3; the shared token steps back", async () => {
    vault.setSecret(userPath("alice"), { setup_token: ALICE_SETUP, ...NEIGHBOURS });
    const run = await sync("alice");
    expect(run.exitCode, run.journal).toBe(0);
    expect(run.journal).toContain("user=alice OK setup token from Vault written to");
    const file = "/home/alice/.config/claude-auth-sync/claude-oauth.env";
    expect(await vm.readFile(file)).toBe(`CLAUDE_CODE_OAUTH_TOKEN=${ALICE_SETUP}\n`);
    expect(await vm.stat(file)).toMatchObject({ mode: "0600", owner: "alice" });
    expect(await asUser("alice", "zsh -i -c")).toBe(`${ALICE_SETUP}|/home/alice/.local/bin:/usr/bin:/bin`);
    expect(await asUser("alice", "bash -l -c")).toMatch(new RegExp(`^${ALICE_SETUP}\\|/home/alice/\\.local/bin:`));
    expect(await asUser("dave", "bash -l -c")).toMatch(/^\|/);

    // carol has a login of her own too, and a token she set by hand: hers stays. dave points his token file at
    // the root-only copy of alice's: systemd would read it as root; the builder names the link and copies nothing.
    await vm.exec(
      "install -d -o dave -g dave /home/dave/.config /home/dave/.config/claude-auth-sync && runuser -u dave -- ln -s /etc/t3-serve/alice.claude-oauth.env /home/dave/.config/claude-auth-sync/claude-oauth.env",
      { check: true },
    );
    const plan = await build(vaultEnv(), "--stage", STAGES, "--plan");
    expect(plan.log).toContain("remove the shared Claude login from /etc/t3-serve/alice.env: alice has their own");
    const applied = await build(vaultEnv(), "--stage", STAGES);
    expect(applied.exitCode, applied.log).toBe(0);
    expect(await vm.readFile("/etc/t3-serve/alice.env")).toBe("T3_PORT=3773\n");
    expect(await vm.stat("/etc/t3-serve/alice.env")).toMatchObject({ mode: "0600", owner: "root" });
    expect(await vm.readFile("/etc/t3-serve/carol.env")).toBe(
      "T3_PORT=3775\nCLAUDE_CODE_OAUTH_TOKEN=carols-own-token\n",
    );
    expect(await vm.readFile("/etc/t3-serve/dave.env")).toContain(`CLAUDE_CODE_OAUTH_TOKEN=${OAUTH}`);
    expect(applied.log).toContain("/home/dave/.config/claude-auth-sync/claude-oauth.env");
    expect((await vm.exec("test -e /etc/t3-serve/dave.claude-oauth.env")).exitCode).toBe(1);
    expect((await environ("dave")).join("\n")).not.toContain(ALICE_SETUP);
    expect(await vm.stat("/etc/t3-serve/alice.claude-oauth.env")).toMatchObject({ mode: "0600", owner: "root" });
    const env = await environ("alice");
    expect(env).toContain(`CLAUDE_CODE_OAUTH_TOKEN=${ALICE_SETUP}`);
    expect(env.join("\n")).not.toContain(OAUTH);

    const again = await build(vaultEnv(), "--stage", STAGES);
    expect(
      again.report.stages.filter((s) => s.outcome !== "unchanged" && s.outcome !== "skipped").map((s) => s.name),
    ).toEqual([]);
    const tokens = [ALICE_SETUP, OAUTH, TOKEN, ...vault.tokens.keys()];
    for (const output of [plan, applied, again, first])
      for (const secret of tokens) {
        expect(output.log).not.toContain(secret);
        expect(JSON.stringify(output.report)).not.toContain(secret);
      }
    const files = await vm.exec([
      "grep",
      "-rlF",
      ...tokens.flatMap((t) => ["-e", t]),
      `${PROJECT_DIR_IN_CONTAINER}/output`,
    ]);
    expect(files.stdout).toBe("");
    const journals = await vm.exec([
      "sh",
      "-c",
      `journalctl -q -o cat | grep -cF -e ${[ALICE_SETUP, ...vault.tokens.keys()].join(" -e ")}`,
    ]);
    expect(journals.stdout.trim()).toBe("0");
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
    expect((await vm.exec("systemctl is-active claude-auth-sync@carol.timer")).stdout.trim()).toBe("inactive");
    expect((await vm.exec("systemctl is-enabled claude-auth-sync@carol.timer")).stdout.trim()).toBe("disabled");
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
