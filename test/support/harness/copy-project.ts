// Puts this repository and a Node runtime into a container, so a test can run
// the builder there as it would run on a fresh VM.
//
// The runtime goes to its own prefix, not /usr/local/bin: the builder
// installs the devvm's own Node 22 there, and a test must see that install
// happen rather than find the test's node already in place.
//
// The builder runs there as the timers and the release run it: the esbuild
// bundle of these sources (made once a test run, as `npm run bundle` makes
// it), not the sources through tsx. Measured in a box: a no-op plan 0.4 s
// and 0.4 CPU-seconds bundled, 1.2 s and 1.5 CPU-seconds through tsx; the
// container tests start some 110 builds.
import { spawn } from "node:child_process";
import { basename, dirname } from "node:path";
import type { StartedTestContainer } from "testcontainers";
import { BuildSession } from "../../../lib/core/build-session.ts";
import { builderBundle } from "../../../lib/release/builder-bundle.ts";

export const PROJECT_DIR_IN_CONTAINER = "/opt/devvm-src";
export const NODE_IN_CONTAINER = "/opt/devvm-runtime/bin/node";
/** The checkout's builder, bundled, in the box. */
export const BUNDLE_IN_CONTAINER = `${PROJECT_DIR_IN_CONTAINER}/dist/devvm.mjs`;
/** How a test starts the builder in a box: the copied Node and the bundle; the arguments follow. */
export const BUILDER_IN_CONTAINER = [NODE_IN_CONTAINER, BUNDLE_IN_CONTAINER];

// Not part of what the builder needs: history, earlier build output, a host-built bundle (maybe stale: a fresh one
// goes in), and node_modules (the bundle holds what it uses: 156 MB and 9,600 files less to copy into every box).
const EXCLUDED = ["./.git", "./output", "./dist", "./node_modules"];

// One session for the test run: builderBundle makes the bundle of a folder once per session.
const session = new BuildSession();

export async function copyProject(container: StartedTestContainer, projectDir: string): Promise<void> {
  // Docker extracts an archive only into a folder that already exists.
  const mkdir = await container.exec(["mkdir", "-p", PROJECT_DIR_IN_CONTAINER, dirname(NODE_IN_CONTAINER)]);
  if (mkdir.exitCode !== 0) throw new Error(`mkdir in the container failed: ${mkdir.stderr}`);
  await copyTar(container, PROJECT_DIR_IN_CONTAINER, [
    "-C",
    projectDir,
    ...EXCLUDED.map((path) => `--exclude=${path}`),
    ".",
  ]);
  // -h: copy the binary, not a symlink to it; the transform names it `node`.
  await copyTar(container, dirname(NODE_IN_CONTAINER), [
    "-h",
    "-C",
    dirname(process.execPath),
    "--transform=s|.*|node|",
    basename(process.execPath),
  ]);
  await container.copyContentToContainer([
    { content: (await builderBundle(session, projectDir)).content, target: BUNDLE_IN_CONTAINER, mode: 0o644 },
  ]);
}

/**
 * Streams `tar -c ARGS` into `target` in the container. The tar CLI, not
 * testcontainers' copyDirectoriesToContainer/copyFilesToContainer: those
 * build the archive with archiver, which cannot leave .git and output/ out
 * and was the slowest of the three ways measured on this project (idle
 * machine: tar CLI 2 s, tar npm package 3 s, archiver 6.5 s incl. .git).
 */
async function copyTar(container: StartedTestContainer, target: string, args: string[]): Promise<void> {
  const tar = spawn("tar", ["-c", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  tar.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    tar.on("error", reject);
    tar.on("close", resolve);
  });
  // Watched before the copy, so a tar that dies early is not an unhandled rejection.
  exited.catch(() => {});
  await container.copyArchiveToContainer(tar.stdout, target);
  const code = await exited;
  // GNU tar exits 1 when a file changed while it was read (someone editing
  // the project meanwhile); the archive is still whole. 2 and up is fatal,
  // and a cut-short archive must not pass for a whole one.
  if (code === 1) process.stderr.write(`copyProject: ${stderr}`);
  if (code !== 0 && code !== 1)
    throw new Error(`tar -c ${args.join(" ")} exited with ${code ?? "a signal"}: ${stderr.trim()}`);
}
