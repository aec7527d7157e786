// The local base images the container tests boot, one per release: what a
// fresh VM of that release has before the builder runs, and nothing the
// builder itself installs (no ca-certificates, curl, git, ...), so a test
// proves the builder brings everything it needs. There is no registry here,
// so each is made locally (lib/image/release-base.ts: debootstrap, or
// mmdebstrap for Ubuntu) and imported with `docker import`, and reused while
// its recipe is unchanged.
//
//   npx tsx test/support/harness/base-image.ts [KEY]    builds KEY's image (default TEST_RELEASE) if missing, prints its tag
import { createHash } from "node:crypto";
import { mkdtemp, readFile, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { $ } from "zx";
import { BuildSession } from "../../../lib/core/build-session.ts";
import { readSettings } from "../../../lib/inputs/settings.ts";
import { RELEASES, releaseByKey, type Release } from "../../../lib/machine/releases.ts";
import { makeReleaseBase, releaseBase } from "../../../lib/image/release-base.ts";

/** The release the container tests boot unless a test names another. */
export const TEST_RELEASE = "debian-13";

/** Everything that decides the image's content; its hash is in the image's tag. */
export function baseImageRecipe(key: string = TEST_RELEASE) {
  return {
    // Bump when the build steps below change in a way the data does not show.
    version: 4,
    ...releaseBase(release(key)),
    imageChanges: IMAGE_CHANGES,
  };
}

// `docker import` settings: boot systemd and tell it that it runs in a
// container. (Docker 20.10's import rejects STOPSIGNAL, so `docker stop`
// cannot halt systemd cleanly; the tests kill their containers anyway.)
// With the flags startDevvm uses, each release boots with no failed unit.
const IMAGE_CHANGES = ['CMD ["/sbin/init"]', "ENV container=docker"];

const IMAGE_NAME = "devvm-base";

/** devvm-base:KEY-HASH, HASH of the release's recipe. */
export function baseImageTag(key: string = TEST_RELEASE): string {
  const hash = createHash("sha256")
    .update(JSON.stringify(baseImageRecipe(key)))
    .digest("hex");
  return `${IMAGE_NAME}:${key}-${hash.slice(0, 12)}`;
}

function release(key: string): Release {
  const found = releaseByKey(key);
  if (!found) throw new Error(`no release "${key}"; the releases are ${RELEASES.map((r) => r.key).join(", ")}`);
  return found;
}

/** Per release: concurrent calls for one release share one build. */
const ensuring = new Map<string, Promise<string>>();

/** The base image's tag for the release `key`, building the image first when docker does not have it. */
export function ensureBaseImage(key: string = TEST_RELEASE): Promise<string> {
  let pending = ensuring.get(key);
  if (!pending) {
    pending = ensureBaseImageOnce(release(key)).catch((error: unknown) => {
      ensuring.delete(key);
      throw error;
    });
    ensuring.set(key, pending);
  }
  return pending;
}

async function ensureBaseImageOnce(of: Release): Promise<string> {
  const tag = baseImageTag(of.key);
  if ((await $({ nothrow: true, quiet: true })`docker image inspect ${tag}`).exitCode === 0) return tag;
  const started = Date.now();
  const rootfs = await mkdtemp(join(tmpdir(), "devvm-base-"));
  try {
    const ctx = { log: { info: progress, debug: () => {} }, settings: readSettings(), session: new BuildSession() };
    await makeReleaseBase(ctx, of, rootfs);
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
  const changes = IMAGE_CHANGES.flatMap((change) => ["--change", change]);
  await $`tar --numeric-owner -C ${rootfs} -c . | docker import ${changes} - ${tag}`.quiet();
  progress(`import done in ${seconds(started)}`);
}

/** Removes the temporary root, first unmounting whatever a failed debootstrap or mmdebstrap left mounted in it. */
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
  console.log(await ensureBaseImage(process.argv[2]));
}
