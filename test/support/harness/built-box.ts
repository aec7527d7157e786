// The built box: a devvm built from scratch by this checkout's code (the
// whole pipeline, in a fresh VM, against the stand-in sources), committed as
// a docker image, so that a test about one part of a built devvm starts from
// one instead of building its own. Booting it is a reboot of that devvm:
// systemd starts its instances, t3-dispatch and timers again.
//
//   await using vm = await startBuiltBox();
//
// The image's tag is the hash of everything the build was made from: the
// tracked files the build reads (inputs, lib, stages, files, build.ts, the
// lock), the stand-ins and fixtures that decide the pins and what is served,
// this harness, the base image's tag, the Node that runs the builder and the
// commit (the box's /opt/devvm/builder/BUILDER_COMMIT is in its manifest,
// which the from-scratch test compares byte for byte). A
// tag that docker has is reused; any other is built, once, by the first
// test that asks (or taken from the crash test's clean build, which is the
// same build: offerBuiltBox). A new tag replaces all but the three newest
// others (2.7 GB each); one a container still uses stays until removed:
//   docker image rm $(docker image ls -q devvm-built)
//
// The stand-ins a test starts listen on other ports than the build's did:
// the box's settings (/opt/devvm/builder/settings.env) name those, so a
// build that fetches must be given the test's own (as every build here is).
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { baseImageTag } from "./base-image.ts";
import { buildIn, PROJECT_DIR } from "./build-in-vm.ts";
import { startFreshVm } from "./build-in-vm.ts";
import { startDevvm, type DevvmContainer } from "./devvm-container.ts";
import { builderIdentity } from "../../../lib/output/report.ts";
import { startStandInSources, writeInputs } from "../stand-ins/sources.ts";

/** Where the built box's inputs are: the project's roster and packages, the stand-ins' pins. */
export const BUILT_BOX_INPUTS = "/opt/devvm-inputs";

const IMAGE_NAME = "devvm-built";
/** Built boxes of other checkouts kept beside a new one (some 2.7 GB each). */
const KEEP_OTHERS = 3;
// Bump when how the box is made changes in a way the files below do not show.
const RECIPE_VERSION = 1;
const FROM = [
  "build.ts",
  "bootstrap.sh",
  "package.json",
  "package-lock.json",
  "tsconfig.json",
  "packages.txt",
  "pins.json",
  "roster.yaml",
  "lib",
  "stages",
  "files",
  "test/support/stand-ins",
  "test/support/fixtures",
  "test/support/harness/base-image.ts",
  "test/support/harness/build-in-vm.ts",
  "test/support/harness/copy-project.ts",
  "test/support/harness/built-box.ts",
  "test/support/harness/go-cache.ts",
];

/** devvm-built:HASH, the hash of what the box is built from. */
export async function builtBoxTag(): Promise<string> {
  const listed = await $({ cwd: PROJECT_DIR, quiet: true })`git ls-files -z -- ${FROM}`;
  const hash = createHash("sha256").update(
    JSON.stringify({
      RECIPE_VERSION,
      base: baseImageTag(),
      node: process.version,
      commit: builderIdentity(PROJECT_DIR).commit,
    }),
  );
  // The working tree's files, as startFreshVm copies them: a local run tests what is edited.
  for (const file of listed.stdout.split("\0").filter(Boolean).sort()) {
    const full = path.join(PROJECT_DIR, file);
    hash
      .update(`${file}\0`)
      .update(existsSync(full) ? readFileSync(full) : "(deleted)")
      .update("\0");
  }
  return `${IMAGE_NAME}:${hash.digest("hex").slice(0, 12)}`;
}

let ensuring: Promise<string> | undefined;

/** The built box's image, built and committed first when docker does not have it. */
export function builtBoxImage(): Promise<string> {
  ensuring ??= ensureBuiltBox().catch((error: unknown) => {
    ensuring = undefined;
    throw error;
  });
  return ensuring;
}

async function ensureBuiltBox(): Promise<string> {
  const tag = await builtBoxTag();
  if (await imageExists(tag)) return tag;
  const started = Date.now();
  await using sources = await startStandInSources();
  await using vm = await startFreshVm();
  await writeInputs(vm, BUILT_BOX_INPUTS, sources.pins);
  const run = await buildIn(vm, sources.env, "--inputs", BUILT_BOX_INPUTS);
  if (run.exitCode !== 0)
    throw new Error(`the built box's build from scratch failed (exit ${run.exitCode}):\n${run.log}`);
  await commit(vm, tag);
  process.stderr.write(`built box: built and committed ${tag} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  return tag;
}

/**
 * The crash test's clean build is the built box's build (a fresh VM, the
 * same inputs and settings, this checkout's code): committed as the built
 * box when docker has none for this checkout, so one build serves both.
 */
export async function offerBuiltBox(vm: DevvmContainer): Promise<void> {
  const tag = await builtBoxTag();
  if (await imageExists(tag)) return;
  const started = Date.now();
  await commit(vm, tag);
  process.stderr.write(`built box: committed ${tag} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
}

/**
 * A booted built box: every stage applied, the roster's users with their
 * instances running, output/ holding the build's manifest. The checkout's
 * code at /opt/devvm-src is the code it was built with (the tag says so).
 */
export async function startBuiltBox(): Promise<DevvmContainer> {
  return startDevvm({ image: await builtBoxImage() });
}

/**
 * A file of the built box as its build left it, read from the image without
 * booting it (nothing of it runs or listens): its manifest, its settings.
 */
export async function builtBoxFile(file: string): Promise<string> {
  const image = await builtBoxImage();
  return (await $({ quiet: true })`docker run --rm --network none --entrypoint cat ${image} ${file}`).stdout;
}

/**
 * Where the built box's build found the stand-ins (its installed settings):
 * a test that compares its own build with the built box's starts its
 * stand-ins there, so that both builds were given the same settings.
 */
export async function builtBoxStandInPorts(): Promise<{ registry: number; releases: number; goProxy: number }> {
  const settings = await builtBoxFile("/opt/devvm/builder/settings.env");
  const port = (name: string) => {
    const url = new RegExp(`^${name}="([^"]*)"$`, "m").exec(settings)?.[1];
    if (!url) throw new Error(`the built box's settings.env has no ${name}:\n${settings}`);
    return Number(new URL(url).port);
  };
  return {
    registry: port("DEVVM_NPM_REGISTRY"),
    releases: port("DEVVM_RELEASES_URL"),
    goProxy: port("DEVVM_GOPROXY"),
  };
}

async function commit(vm: DevvmContainer, tag: string): Promise<void> {
  // apt's downloaded .debs and npm's cache (some 0.7 GB) are nothing a devvm is, and nothing the manifest
  // covers: left out, the commit copies a fifth less. (A later build fetches again what it needs.)
  await vm.exec("apt-get clean && rm -rf /root/.npm", { check: true });
  // docker commit pauses the box while it copies: no half-written file goes in.
  await $({ quiet: true })`docker commit --message ${"devvm built box: a from-scratch build"} ${vm.id} ${tag}`;
  // Newest first, as docker lists them: the few newest stay, for checkouts (git worktrees) tested side by side.
  const listed = await $({ quiet: true })`docker image ls --format {{.Repository}}:{{.Tag}} ${IMAGE_NAME}`;
  const older = listed.stdout
    .split("\n")
    .filter((t) => t && t !== tag)
    .slice(KEEP_OTHERS);
  // An image a container still runs is refused by docker, and kept.
  if (older.length > 0) await $({ nothrow: true, quiet: true })`docker image rm ${older}`;
}

async function imageExists(tag: string): Promise<boolean> {
  return (await $({ nothrow: true, quiet: true })`docker image inspect ${tag}`).exitCode === 0;
}
