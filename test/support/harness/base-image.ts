// The local base image the container tests boot: what a fresh Debian 12 VM
// has before the builder runs, and nothing the builder itself installs
// (no ca-certificates, curl, git, ...), so a test proves the builder brings
// everything it needs. There is no registry here, so the image is built
// locally with debootstrap and `docker import`, and reused while the recipe
// is unchanged.
//
//   npx tsx test/support/harness/base-image.ts    builds the image if missing, prints its tag
import { createHash } from "node:crypto";
import { mkdtemp, readFile, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { $ } from "zx";
import { debianBase, debootstrapBase } from "../../../lib/image/debian-base.ts";

/** Everything that decides the image's content; its hash is the image's tag. */
export const baseImageRecipe = {
  // Bump when the build steps below change in a way the data does not show.
  version: 3,
  ...debianBase,
  // `docker import` settings: boot systemd and tell it that it runs in a
  // container. (Docker 20.10's import rejects STOPSIGNAL, so `docker stop`
  // cannot halt systemd cleanly; the tests kill their containers anyway.)
  // With the flags startDevvm uses, this boots with no failed unit.
  imageChanges: ['CMD ["/sbin/init"]', "ENV container=docker"],
};

const IMAGE_NAME = "devvm-base";

export function baseImageTag(): string {
  const hash = createHash("sha256").update(JSON.stringify(baseImageRecipe)).digest("hex");
  return `${IMAGE_NAME}:${hash.slice(0, 12)}`;
}

let ensuring: Promise<string> | undefined;

/** The base image's tag, building the image first when docker does not have it. */
export function ensureBaseImage(): Promise<string> {
  ensuring ??= ensureBaseImageOnce().catch((error: unknown) => {
    ensuring = undefined;
    throw error;
  });
  return ensuring;
}

async function ensureBaseImageOnce(): Promise<string> {
  const tag = baseImageTag();
  if ((await $({ nothrow: true, quiet: true })`docker image inspect ${tag}`).exitCode === 0) return tag;
  const started = Date.now();
  const rootfs = await mkdtemp(join(tmpdir(), "devvm-base-"));
  try {
    await debootstrapBase(rootfs, { info: progress, debug: () => {} });
    await prepareForContainer(rootfs);
    await importRootfs(rootfs, tag);
  } finally {
    await removeRootfs(rootfs);
  }
  progress(`built ${tag} in ${seconds(started)}`);
  return tag;
}

async function prepareForContainer(rootfs: string): Promise<void> {
  // Empty, not absent: systemd then gives each container its own id at boot
  // instead of every container sharing the one debootstrap generated.
  await truncate(join(rootfs, "etc/machine-id"), 0);
  await $`rm -f ${join(rootfs, "var/lib/dbus/machine-id")}`;
  // dpkg without an fsync per file, as Docker's own Debian images have it
  // (docker-apt-speedup): a test box is thrown away, never power-cycled, and
  // a killed dpkg (the crash test) loses nothing that fsync would keep.
  // Measured here: apt-get install golang-go build-essential podman 36 s -> 27 s.
  await writeFile(join(rootfs, "etc/dpkg/dpkg.cfg.d/devvm-test-unsafe-io"), "force-unsafe-io\n");
}

async function importRootfs(rootfs: string, tag: string): Promise<void> {
  progress(`docker import ${tag}`);
  const started = Date.now();
  const changes = baseImageRecipe.imageChanges.flatMap((change) => ["--change", change]);
  await $`tar --numeric-owner -C ${rootfs} -c . | docker import ${changes} - ${tag}`.quiet();
  progress(`import done in ${seconds(started)}`);
}

/** Removes the temporary root, first unmounting whatever a failed debootstrap left mounted in it. */
async function removeRootfs(rootfs: string): Promise<void> {
  const mounts = (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((target) => target === rootfs || target.startsWith(`${rootfs}/`))
    .reverse();
  for (const target of mounts) await $({ nothrow: true })`umount -l ${target}`;
  // --one-file-system: never reach through a mount that is still there.
  await $`rm -rf --one-file-system ${rootfs}`;
}

function progress(message: string): void {
  process.stderr.write(`base-image: ${message}\n`);
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await ensureBaseImage());
}
