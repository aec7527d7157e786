// How a from-scratch build compares with the part of it no builder can
// avoid. Figures, not a test: `npm run bench:scratch` (needs dockerd:
// scripts/with-docker.sh npm run bench:scratch).
//
// On fresh boxes from the base image, in turn:
//   floor:   `apt-get update` and `apt-get install` of exactly the packages
//            pinned in pins.json, with the builder's own apt-get options;
//   builder: the README's main command, `./bootstrap.sh`, in the release
//            archive unpacked as the README says (no Node, no npm), with the
//            stand-in sources' settings and hashes (test/stand-ins).
// Each BENCH_RUNS times (default 2): every wall time, the medians and the
// ratio builder/floor. Then, on the last built box, the no-op runs the
// timers pay (the whole pipeline, `--stage t3`, `--stage users`), started as
// their units start the builder, minus the cost of an empty `docker exec`.
import { readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Pins } from "../lib/inputs/pins.ts";
import { BUILDER_DIR } from "../lib/layout.ts";
import { bootstrapIn, PROJECT_DIR, RELEASE_DIR_IN_CONTAINER, startFreshVm } from "../test/build-in-vm.ts";
import { startDevvm, type DevvmContainer } from "../test/container/devvm-container.ts";
import { startStandInSources, writePins, type StandInSources } from "../test/stand-in-sources.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const NOOP_RUNS = Number(process.env.BENCH_NOOP_RUNS ?? 7);
if (!(RUNS >= 1 && NOOP_RUNS >= 1)) throw new Error("BENCH_RUNS and BENCH_NOOP_RUNS must be positive numbers");

const pins = JSON.parse(readFileSync(path.join(PROJECT_DIR, "pins.json"), "utf8")) as Pins;
// The builder's apt-get options (stages/apt.ts), without its progress plumbing.
const FLOOR = [
  "apt-get update -q",
  `apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold ${Object.entries(pins.apt)
    .map(([name, version]) => `${name}=${version}`)
    .join(" ")}`,
].join(" && ");

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const say = (line: string) => process.stderr.write(`${line}\n`);

async function timed<R extends { exitCode: number; log: string }>(what: string, work: () => Promise<R>): Promise<{ ms: number; run: R }> {
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

async function builderOnce(sources: StandInSources, keep: (box: DevvmContainer) => Promise<void>): Promise<number> {
  await using box = await startFreshVm("release");
  await writePins(box, `${RELEASE_DIR_IN_CONTAINER}/pins.json`, sources.pins);
  const { ms, run } = await timed("./bootstrap.sh", () => bootstrapIn(box, sources.env));
  const slow = run.report.stages.flatMap((s) => ("durationMs" in s && s.durationMs >= 100 ? [`${s.name} ${seconds(s.durationMs)}`] : []));
  say(`  its stages (100 ms or more): ${slow.join(", ")}`);
  await keep(box);
  return ms;
}

/** The median wall time of a command in the box, over NOOP_RUNS runs after one warm-up. */
async function medianExec(box: DevvmContainer, command: string[], check: (stderr: string) => void = () => {}): Promise<number> {
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
  const asTimer = (...args: string[]) => ["sh", "-c", `set -a && . ${BUILDER_DIR}/settings.env && exec /usr/local/bin/node ${BUILDER_DIR}/dist/devvm.mjs "$@"`, "timer", ...args];
  const noOp = (what: string) => (stderr: string) => {
    if (!/stages: /.test(stderr) || /\b(changed|failed)\b/.test(stderr.replace(/unchanged/g, ""))) throw new Error(`${what} was not a no-op:\n${stderr}`);
  };
  const empty = await medianExec(box, ["true"]);
  const lines = [`no-op runs on the built box, as the timers start the builder (median of ${NOOP_RUNS}, minus an empty docker exec: ${Math.round(empty)} ms):`];
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

await using sources = await startStandInSources();
const floor: number[] = [];
const builder: number[] = [];
let noOp: string[] = [];
for (let run = 1; run <= RUNS; run++) {
  say(`run ${run} of ${RUNS}: the floor (apt-get update, apt-get install of ${Object.keys(pins.apt).length} pinned packages) on a fresh box`);
  floor.push(await floorOnce());
  say(`  floor: ${seconds(floor.at(-1)!)}`);
  say(`run ${run} of ${RUNS}: the builder (./bootstrap.sh from the release archive) on a fresh box`);
  builder.push(await builderOnce(sources, async (box) => void (run === RUNS && (noOp = await noOpFigures(box)))));
  say(`  builder: ${seconds(builder.at(-1)!)}`);
}

const ratio = median(builder) / median(floor);
console.log(`from scratch on fresh boxes from the base image (${RUNS} runs each):`);
console.log(`  floor    ${floor.map(seconds).join(", ")}; median ${seconds(median(floor))}`);
console.log(`  builder  ${builder.map(seconds).join(", ")}; median ${seconds(median(builder))}`);
console.log(`  builder/floor ${ratio.toFixed(2)}`);
console.log(noOp.join("\n"));
