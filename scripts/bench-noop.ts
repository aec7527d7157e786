// Prints how long a no-op build takes (everything already in place), for
// each way of starting the builder. Figures, not a test: run `npm run bench`.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

const repo = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const runs = Number(process.env.BENCH_RUNS ?? 5);
const root = mkdtempSync(path.join(tmpdir(), "devvm-bench-root-"));
const output = mkdtempSync(path.join(tmpdir(), "devvm-bench-out-"));
// kubelogin's and kubectl's releases are out of reach here, and the committed
// pins.json has no hashes for them (the build would stop before any stage):
// left out unless BENCH_SKIP says otherwise (their no-op check is a file
// hash), with users, which needs the accounts of a real machine, not an
// empty --root.
const skip = process.env.BENCH_SKIP ?? "kubelogin,kubectl,users";
const args = ["--root", root, "--output", output, ...(skip ? ["--skip", skip] : [])];

execFileSync("npm", ["run", "--silent", "bundle"], { cwd: repo, stdio: "inherit" });
const entries: Array<[string, string, string[]]> = [
  ["npx tsx build.ts", "npx", ["tsx", "build.ts", ...args]],
  ["node --import tsx build.ts", process.execPath, ["--import", "tsx", "build.ts", ...args]],
  ["node dist/devvm.mjs (bundle)", process.execPath, ["dist/devvm.mjs", ...args]],
];

try {
  spawnSync(entries[2]![1], entries[2]![2], { cwd: repo }); // the first build does the work
  console.log(
    `no-op build of every stage${skip ? ` but ${skip}` : ""} under a --root, ${runs} runs each (median, min, max in ms):`,
  );
  for (const [label, command, argv] of entries) {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const run = spawnSync(command, argv, { cwd: repo, encoding: "utf8" });
      times.push(performance.now() - t0);
      if (run.status !== 0) throw new Error(`${label} exited ${run.status}: ${run.stderr}`);
      if (
        !/stages: (\d+ unchanged|.*skipped)/.test(run.stderr) ||
        /changed/.test(run.stderr.replace(/unchanged/g, ""))
      ) {
        throw new Error(`${label} was not a no-op:\n${run.stderr}`);
      }
    }
    times.sort((a, b) => a - b);
    const f = (n: number) => Math.round(n).toString().padStart(5);
    console.log(`  ${label.padEnd(32)} ${f(times[Math.floor(times.length / 2)]!)} ${f(times[0]!)} ${f(times.at(-1)!)}`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(output, { recursive: true, force: true });
}
