// Go's build cache kept between the test boxes of a release, through the
// builder's own setting for it (DEVVM_GO_CACHE, which an admin may set too):
// compiling Go's standard library for t3-dispatch takes some 11 s of two
// cores, in every box that builds from scratch. The first such box's cache
// is kept on the host (keyed by the release and its pinned Go), and each
// fresh box of that release starts with it. Go keys every entry by the hash
// of all its inputs, so a kept entry can only save work, never change what
// is built: the boxes' manifests stay byte for byte the same.
import { existsSync, readFileSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { $ } from "zx";
import type { Pins } from "../../../lib/inputs/pins.ts";
import { releaseOf } from "../../../lib/machine/releases.ts";
import type { DevvmContainer } from "./devvm-container.ts";

/** Where a test box keeps it: the stand-in sources' settings name it (DEVVM_GO_CACHE). */
export const GO_CACHE_IN_BOX = "/var/cache/devvm-test/go-build";

// Read here, not from the stand-ins' module, which imports the harness that imports this.
const PINS = JSON.parse(readFileSync(new URL("../../../pins.json", import.meta.url), "utf8")) as Pins;

function hostCopy(release: string): string {
  const go = PINS.apt[release as keyof Pins["apt"]]?.["golang-go"] ?? "none";
  return path.join(tmpdir(), `devvm-test-go-cache-${release}-${go.replace(/[^\w.+~-]/g, "_")}.tar`);
}

/** Puts the kept cache of the box's release into a fresh box, when there is one. */
export async function seedGoCache(vm: DevvmContainer, release: string): Promise<void> {
  const copy = hostCopy(release);
  if (!existsSync(copy)) return;
  await vm.copyFile(copy, "/var/tmp/devvm-test-go-cache.tar");
  await vm.exec(
    `install -d -m 0700 ${path.dirname(GO_CACHE_IN_BOX)} ${GO_CACHE_IN_BOX} && tar -xf /var/tmp/devvm-test-go-cache.tar -C ${GO_CACHE_IN_BOX} && rm /var/tmp/devvm-test-go-cache.tar`,
    { check: true },
  );
}

/** After a build: keeps the box's cache on the host when none is kept for its release yet (through /var/tmp: docker cp does not see a tmpfs /tmp). */
export async function keepGoCache(vm: DevvmContainer): Promise<void> {
  const release = releaseOf(await vm.readFile("/etc/os-release"))?.key;
  if (!release || existsSync(hostCopy(release))) return;
  const made = await vm.exec(
    `test -n "$(ls -A ${GO_CACHE_IN_BOX} 2>/dev/null)" && tar -cf /var/tmp/devvm-test-go-cache.tar -C ${GO_CACHE_IN_BOX} .`,
  );
  if (made.exitCode !== 0) return;
  const part = `${hostCopy(release)}.part-${process.pid}`;
  try {
    await $({ quiet: true })`docker cp ${vm.id}:/var/tmp/devvm-test-go-cache.tar ${part}`;
    await rename(part, hostCopy(release));
  } finally {
    await rm(part, { force: true });
    await vm.exec("rm -f /var/tmp/devvm-test-go-cache.tar");
  }
}
