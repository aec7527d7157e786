// What test/service-layer.test.ts gives its box: the secrets in the Vault
// stand-in, a t3 stand-in, the users, and a sampler of command lines.
import type { Pins } from "../../../lib/inputs/pins.ts";
import { extraSuiteFiles, parseOneLineSources, SOURCES_LIST } from "../../../lib/machine/apt-sources.ts";
import { releaseOf } from "../../../lib/machine/releases.ts";
import type { Report } from "../../../lib/output/report.ts";
import { PROJECT_PINS } from "../stand-ins/sources.ts";
import { BUILDER_IN_CONTAINER, NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./copy-project.ts";
import { keepGoCache } from "./go-cache.ts";
import type { DevvmContainer } from "./devvm-container.ts";

export const STAGES = "vault-tokens,service-helpers,sudoers,builder-install,units";
export const TOKEN = "hvs.service-layer-stand-in-token-7d1e";
export const OAUTH = "sk-ant-oat01-service-layer-oauth-c0ffee";
export const CODEX = "codex-access-service-layer-beef42";
export const AUTH_JSON = `{"tokens":{"access_token":"${CODEX}"}}\n`;
export const SECRETS = [TOKEN, OAUTH, CODEX];
export const SUDOERS_SOURCE = `${PROJECT_DIR_IN_CONTAINER}/files/service/sudoers-t3-autopair`;
// What earlier stages install (node, t3), here as stand-ins: t3 says who ran it with what.
const T3_STAND_IN = `#!/bin/sh\nprintf '{"credential":"stand-in","uid":%s,"args":"%s"}\\n' "$(id -u)" "$*"\n`;

// A mapped user with t3 state, and an unmapped one. t3-dispatch exits at
// start without its map, which the users stage writes (not run here).
const MAPPED_AND_UNMAPPED_USERS =
  "useradd -m alice && useradd -m bob && echo 'alice.moreau=alice' > /etc/ttyd-user-map && " +
  `install -d -m 0755 /etc/t3-serve && echo '{"alice.moreau":{"os_user":"alice","port":38123}}' > /etc/t3-serve/dispatch.json && ` +
  "runuser -u alice -- sh -c 'mkdir -p ~/.t3/userdata && sqlite3 ~/.t3/userdata/state.sqlite \"create table t(x); insert into t values (42);\"'";
// Every command line of every process, sampled into /tmp/cmdlines until
// /tmp/stop-sampler exists (bash builtins only: no fork per sample).
export const START_SAMPLER = [
  "bash",
  "-c",
  'nohup bash -c \'declare -A seen; while [ ! -e /tmp/stop-sampler ]; do for f in /proc/[0-9]*/cmdline; do mapfile -d "" a < "$f" 2>/dev/null || continue; l="${a[*]}"; [ -n "$l" ] && [ -z "${seen[$l]}" ] && seen[$l]=1 && echo "$l" >> /tmp/cmdlines; done; sleep 0.01; done\' >/dev/null 2>&1 &',
];
export const VAULT_SECRETS = {
  "secret/workstation": { claude_oauth_token: OAUTH, codex_shared_auth_json: AUTH_JSON },
};

/** A build's outcome with its stdout too: the test looks for secrets there. */
export interface Build {
  exitCode: number;
  log: string;
  stdout: string;
  report: Report;
}

/** `build.ts --json --stage STAGES ARGS` in the box, as root, its log and time on stderr. */
export async function buildStages(
  vm: DevvmContainer,
  stages: string,
  env: Record<string, string>,
  ...args: string[]
): Promise<Build> {
  const started = Date.now();
  const run = await vm.exec([...BUILDER_IN_CONTAINER, "--json", "--stage", stages, ...args], {
    workingDir: PROJECT_DIR_IN_CONTAINER,
    env,
  });
  await keepGoCache(vm);
  process.stderr.write(
    `build --stage ${stages} ${args.join(" ")}: exit ${run.exitCode} in ${Date.now() - started} ms\n${run.stderr}`,
  );
  return { exitCode: run.exitCode, log: run.stderr, stdout: run.stdout, report: JSON.parse(run.stdout) as Report };
}

/**
 * golang-go as the apt stage leaves it on the box's release, at its pin:
 * from the release's extra suite where it has one (on Debian 12, Go 1.23
 * from bookworm-backports: t3-dispatch needs Go 1.22, bookworm's own is
 * 1.19), through the stage's own source and preference files.
 */
async function goAsTheAptStageLeavesIt(vm: DevvmContainer): Promise<string> {
  const osRelease = await vm.readFile("/etc/os-release");
  const release = releaseOf(osRelease);
  if (!release) throw new Error(`the box runs no release the devvm supports:\n${osRelease}`);
  // Only a release with an extra suite needs its files, read against the box's own sources.list (Debian 12's base has it).
  const sources = release.extraSuite ? parseOneLineSources(await vm.readFile(SOURCES_LIST), SOURCES_LIST) : [];
  for (const file of extraSuiteFiles(release, sources)) {
    const encoded = Buffer.from(file.content).toString("base64");
    await vm.exec(`echo ${encoded} | base64 -d > ${file.path}`, { check: true });
  }
  return `golang-go=${PROJECT_PINS.apt[release.key as keyof Pins["apt"]]!["golang-go"]}`;
}

/** What earlier stages would have left, as the stages under test need it: sudo, go and sqlite3, node and a t3 stand-in, the users. */
export async function prepareBox(vm: DevvmContainer): Promise<void> {
  const t0 = Date.now();
  const go = await goAsTheAptStageLeavesIt(vm);
  await vm.exec(`apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo ${go} sqlite3`, {
    check: true,
  });
  process.stderr.write(`apt-get install sudo ${go} sqlite3: ${Date.now() - t0} ms\n`);
  await vm.exec(
    [
      "sh",
      "-c",
      `ln -s ${NODE_IN_CONTAINER} /usr/local/bin/node && printf %s "$T3" > /usr/local/bin/t3 && chmod 755 /usr/local/bin/t3`,
    ],
    { check: true, env: { T3: T3_STAND_IN } },
  );
  // A mapped user with t3 state, and an unmapped one.
  await vm.exec(MAPPED_AND_UNMAPPED_USERS, { check: true });
  // A persistent timer with a stamp this old would fire at once when started (docs/devvm.md lesson).
  await vm.exec(
    "mkdir -p /var/lib/systemd/timers && touch -d '3 days ago' /var/lib/systemd/timers/stamp-devvm-t3-pin.timer",
    { check: true },
  );
}
