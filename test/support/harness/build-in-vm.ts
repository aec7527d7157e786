// Runs the builder inside a devvm container as root, as an admin would on a
// fresh VM, and fetches what it wrote. Shared by the container tests and
// `npm run repro`.
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { $ } from "zx";
import { EXIT } from "../../../lib/cli/args.ts";
import type { Manifest } from "../../../lib/output/manifest.ts";
import { builderIdentity, type Report } from "../../../lib/output/report.ts";
import { makeRelease } from "../../../scripts/release.ts";
import { BUILDER_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./copy-project.ts";
import { ensureBaseImage, TEST_RELEASE } from "./base-image.ts";
import { keepGoCache, seedGoCache } from "./go-cache.ts";
import { startDevvm, type DevvmContainer } from "./devvm-container.ts";

export const PROJECT_DIR = fileURLToPath(new URL("../../..", import.meta.url));

export interface BuildRun {
  exitCode: number;
  /** The build's progress lines (its stderr). */
  log: string;
  report: Report;
}

let release: ReturnType<typeof makeRelease> | undefined;

/** The release archive of this checkout (`npm run release`), made once per test run. */
export function releaseArchive(): ReturnType<typeof makeRelease> {
  release ??= makeRelease(path.join(tmpdir(), `devvm-test-release-${process.pid}`));
  return release;
}

/** Where the README's commands unpack the release archive in a bare VM (root's home). */
export const RELEASE_DIR_IN_CONTAINER = `/root/devvm-${builderIdentity(PROJECT_DIR).version}`;

/** Where a clone's files go in a bare VM (startFreshVm("clone")). */
export const CLONE_DIR_IN_CONTAINER = "/root/devvm";

/**
 * A booted fresh VM, ready for builds. "project": this repository (without
 * node_modules) with the builder's bundle, and the host's Node, copied in. "release":
 * only the release archive, unpacked as the README says: no Node, npm or
 * node_modules, so the build starts from bootstrap.sh. "clone": only the
 * repository's tracked files, as a clone has them (no bundle, no
 * node_modules), at CLONE_DIR_IN_CONTAINER. A fresh VM of the test release
 * unless another release's key is given.
 */
export async function startFreshVm(
  from: "project" | "release" | "clone" = "project",
  release: string = TEST_RELEASE,
): Promise<DevvmContainer> {
  const vm = await startDevvm({ image: await ensureBaseImage(release) });
  try {
    await seedGoCache(vm, release);
    if (from === "release") {
      const { file } = await releaseArchive();
      await vm.copyFile(file, `/root/${path.basename(file)}`);
      await vm.exec(`cd /root && tar -xzf ${path.basename(file)}`, { check: true });
    } else if (from === "clone") {
      // The working tree's tracked files (a file deleted but not yet committed is left out), not HEAD's: a local run tests what is edited.
      const tarball = path.join(tmpdir(), `devvm-test-clone-${process.pid}.tar.gz`);
      await $({
        quiet: true,
        cwd: PROJECT_DIR,
      })`git ls-files -z | tar --null -T - --ignore-failed-read -czf ${tarball}`;
      await vm.copyFile(tarball, "/root/clone.tar.gz");
      rmSync(tarball, { force: true });
      await vm.exec(`mkdir -p ${CLONE_DIR_IN_CONTAINER} && tar -xzf /root/clone.tar.gz -C ${CLONE_DIR_IN_CONTAINER}`, {
        check: true,
      });
    } else {
      await vm.copyProject(PROJECT_DIR);
      // .git stays out of the copy; the report still names the commit built.
      const { commit } = builderIdentity(PROJECT_DIR);
      await vm.exec(["sh", "-c", `echo ${commit} > ${PROJECT_DIR_IN_CONTAINER}/BUILDER_COMMIT`], { check: true });
    }
    await prepareAdminTree(vm);
    return vm;
  } catch (error) {
    await vm[Symbol.asyncDispose]();
    throw error;
  }
}

/**
 * What an admin's restored home holds on a real devvm before the builder
 * runs: the code tree (world-readable, as it once was) and the shared
 * Claude config with two of its four linkable folders.
 */
async function prepareAdminTree(vm: DevvmContainer): Promise<void> {
  // Made by root before wizard's account exists, as a restore would.
  await vm.exec("install -d -m 0775 /home/wizard/code /home/wizard/.claude/skills /home/wizard/.claude/rules", {
    check: true,
  });
}

/** Settings for a build, e.g. the stand-ins' addresses (DEVVM_NPM_REGISTRY, DEVVM_RELEASES_URL). */
export type BuildEnv = Record<string, string>;

/** Runs the checkout's builder (its bundle) with the host's Node (startFreshVm("project")), as root. */
export async function buildIn(vm: DevvmContainer, env: BuildEnv, ...args: string[]): Promise<BuildRun> {
  return retryWhileLocked(args, async () => {
    const run = await vm.exec([...BUILDER_IN_CONTAINER, "--json", ...args], {
      workingDir: PROJECT_DIR_IN_CONTAINER,
      env,
    });
    await keepGoCache(vm);
    return { exitCode: run.exitCode, log: run.stderr, report: parseReport(run.stdout, run) };
  });
}

/**
 * The README's main command, `./bootstrap.sh [options]`, exactly, in a VM
 * from startFreshVm("release"); the report is the output/report.json it
 * wrote (--plan writes none: it is asked for on stdout with --json).
 */
export async function bootstrapIn(vm: DevvmContainer, env: BuildEnv, ...args: string[]): Promise<BuildRun> {
  const plan = args.includes("--plan");
  const reportFile = `${RELEASE_DIR_IN_CONTAINER}/output/report.json`;
  return retryWhileLocked(args, async () => {
    await vm.exec(["rm", "-f", reportFile], { check: true });
    const run = await vm.exec(["./bootstrap.sh", ...args, ...(plan ? ["--json"] : [])], {
      workingDir: RELEASE_DIR_IN_CONTAINER,
      env,
    });
    const text = plan ? run.stdout : (await vm.exec(["cat", reportFile])).stdout;
    await keepGoCache(vm);
    return { exitCode: run.exitCode, log: run.stderr, report: parseReport(text, run) };
  });
}

function parseReport(text: string, run: { exitCode: number; stdout: string; stderr: string }): Report {
  try {
    return JSON.parse(text) as Report;
  } catch {
    throw new Error(`the build left no report (exit ${run.exitCode}):\n${run.stderr}${run.stdout}`);
  }
}

/**
 * Runs a build as an admin would, waiting (up to 30 s) while another build
 * holds the lock: a box the builder has built runs its own reconcile timer
 * (OnBootSec=2min), which may be running right then.
 */
async function retryWhileLocked(args: string[], build: () => Promise<BuildRun>): Promise<BuildRun> {
  for (let attempt = 1; ; attempt++) {
    const run = await build();
    if (run.exitCode !== EXIT.buildRunning || attempt === 30) return run;
    process.stderr.write(
      `build ${args.join(" ")}: another build holds the lock (exit ${EXIT.buildRunning}), trying again in 1 s\n`,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export async function manifestIn(
  vm: DevvmContainer,
  builderDir = PROJECT_DIR_IN_CONTAINER,
): Promise<{ text: string; manifest: Manifest; sha256: string }> {
  const text = await vm.readFile(`${builderDir}/output/manifest.json`);
  return { text, manifest: JSON.parse(text) as Manifest, sha256: createHash("sha256").update(text).digest("hex") };
}

/** The stages of a rerun that did something, with the paths they touched: empty when idempotent. */
export function nonIdempotentStages(report: Report): string[] {
  return report.stages
    .filter((s) => s.outcome !== "unchanged" && s.outcome !== "skipped")
    .map((s) => {
      const touched =
        "changes" in s ? s.changes.map((c) => ("path" in c ? c.path : "name" in c ? c.name : c.description)) : [];
      return `${s.name} (${s.outcome}${touched.length ? `: ${touched.join(", ")}` : ""})`;
    });
}
