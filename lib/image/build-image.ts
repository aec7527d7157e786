// `build.ts image`: the devvm as a root file system archive, the same bytes
// on every run from the same commit, inputs and sources (issue 14). In order:
//   1. the release's base made here (lib/image/release-base.ts): Debian's
//      with debootstrap, Ubuntu's with mmdebstrap;
//   2. the builder's release tree put into it, and `./bootstrap.sh
//      --for-image` run there, chrooted, in a mount namespace of its own (so
//      no mount outlives it, even after a kill): every stage that needs no
//      booted machine, exactly as on a fresh machine;
//   3. the first-boot unit installed: on its first boot the image's own
//      builder runs the whole pipeline, which does the stages left out
//      (Vault's tokens, users, services, instances) and finds the rest done;
//   4. what differs between two builds normalised (lib/image/normalise.ts);
//   5. the tree written as a reproducible .tar.gz, with a JSON record beside it.
// The host's own system is not touched: everything happens under the work
// folder, removed at the end (a killed run's is removed by the next).
import { createHash } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import type { BuildSession } from "../core/build-session.ts";
import type { Logger } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { run } from "../machine/exec.ts";
import { writeFileAtomic } from "../machine/files.ts";
import { formatBytes, formatDuration } from "../core/progress.ts";
import type { Inputs } from "../inputs/index.ts";
import { processRuns, removeLeftovers, scratchPrefix } from "../machine/leftovers.ts";
import { endOrphans, recordChildrenIn, stopRecordingChildren } from "../machine/children.ts";
import { sourceDateEpoch, writeReleaseTree } from "../release/release-tree.ts";
import { builderIdentity } from "../output/report.ts";
import { certificateFiles } from "../sources/download.ts";
import { dispatchSource, settingsEnvironment, settingVariables, type Settings } from "../inputs/settings.ts";
import type { Release } from "../machine/releases.ts";
import { makeReleaseBase, releaseBase, type ReleaseBase } from "./release-base.ts";
import { normaliseRoot } from "./normalise.ts";
import { writeRootfsArchive } from "./rootfs-archive.ts";

// 2: the record names its release, and `base` is that release's recipe (release-base.ts).
export const IMAGE_RECORD_VERSION = 2;
/** The release of an image unless `--release` names another: a new box is Debian 13 (docs/devvm.md "Releases"). */
export const DEFAULT_IMAGE_RELEASE = "debian-13";
/** Where the image build keeps what it needs inside the root; /var/tmp is emptied before the archive is written. */
const WORK_IN_ROOT = "/var/tmp/devvm-image";
/** Extra CA certificates stay in the image at this path: its builder's settings name them for the first boot and the timers. */
const CA_IN_ROOT = "/etc/devvm/extra-ca-certs";
const FIRST_BOOT_UNIT = "devvm-first-boot.service";
const FIRST_BOOT_ENV_DIR = "etc/devvm";
const WORK_PREFIX = ".image-work-";
const WORK_PATTERN = /^\.image-work-(\d+)-/;
const CHILDREN_FILE = "children.json";

export interface ImageOptions {
  repoDir: string;
  inputsDir: string;
  inputs: Inputs;
  /** The image's release: its base, and the apt pins the build inside takes. */
  release: Release;
  outputDir: string;
  settings: Settings;
  log: Logger;
  /** The image command's session (lib/core/build-session.ts). */
  session: BuildSession;
}

export interface ImageRecord {
  recordVersion: number;
  archive: { file: string; sha256: string; size: number };
  /** sha256 of the manifest the build inside the image wrote (devvm-image.manifest.json beside the archive). */
  manifestSha256: string;
  builder: { version: string; commit: string };
  sourceDateEpoch: number;
  /** sha256 of roster.yaml, packages.txt and pins.json. */
  inputs: Record<string, string>;
  /** The release's key (lib/machine/releases.ts). */
  release: string;
  base: ReleaseBase;
}

export async function buildImage(options: ImageOptions): Promise<ImageRecord> {
  const { outputDir, log } = options;
  await fs.mkdir(outputDir, { recursive: true });
  await removeKilledRuns(outputDir, log);
  const work = await fs.mkdtemp(path.join(outputDir, scratchPrefix(WORK_PREFIX)));
  const root = path.join(work, "root");
  const started = Date.now();
  // What this run starts (debootstrap, the build inside) is recorded, for the next run to end were this one killed.
  recordChildrenIn(path.join(work, CHILDREN_FILE));
  try {
    const epoch = await sourceDateEpoch(options.repoDir);
    log.info(`SOURCE_DATE_EPOCH ${epoch} (${new Date(epoch * 1000).toISOString()})`);
    await fs.mkdir(root);
    await makeReleaseBase({ log, settings: options.settings, session: options.session }, options.release, root);
    const inner = await prepareBuild(options, root, epoch);
    await buildInside(root, inner, log);
    const manifest = await fs.readFile(path.join(root, WORK_IN_ROOT, "output/manifest.json"));
    await installFirstBootUnit(options.repoDir, root);
    await fs.rm(path.join(root, WORK_IN_ROOT), { recursive: true, force: true });
    for (const line of await normaliseRoot(root, epoch)) log.debug(`normalised: ${line}`);
    log.info("writing the archive");
    const file = path.join(outputDir, "devvm-image.tar.gz");
    const recordFile = path.join(outputDir, "devvm-image.json");
    // The record goes last: an archive is never beside the record of another.
    await fs.rm(recordFile, { force: true });
    const archive = await writeRootfsArchive(root, file, epoch, (read, total) =>
      log.info(`writing the archive: ${formatBytes(read)} of ${formatBytes(total)} read`),
    );
    const record: ImageRecord = {
      recordVersion: IMAGE_RECORD_VERSION,
      archive: { file: path.basename(file), sha256: archive.sha256, size: archive.size },
      manifestSha256: createHash("sha256").update(manifest).digest("hex"),
      builder: builderIdentity(options.repoDir),
      sourceDateEpoch: epoch,
      inputs: options.inputs.hashes,
      release: options.release.key,
      base: releaseBase(options.release),
    };
    const owner = { mode: 0o644, uid: 0, gid: 0 };
    await writeFileAtomic(path.join(outputDir, "devvm-image.manifest.json"), manifest, owner);
    await writeFileAtomic(recordFile, `${JSON.stringify(record, null, 2)}\n`, owner);
    log.info(`image built in ${formatDuration(Date.now() - started)}`);
    return record;
  } finally {
    stopRecordingChildren();
    // --one-file-system: never through a mount, were one left.
    await run({ log }, "rm", ["-rf", "--one-file-system", work]);
  }
}

/**
 * What a killed image build left: its processes (the build inside the root
 * goes on without it), then its work folder. Its mount namespace ended with
 * its last process, so nothing is mounted there any more.
 */
export async function removeKilledRuns(outputDir: string, log: Logger): Promise<void> {
  for (const name of await fs.readdir(outputDir)) {
    const pid = Number(WORK_PATTERN.exec(name)?.[1]);
    if (!(pid > 0) || pid === process.pid || processRuns(pid)) continue;
    const ended = await endOrphans(path.join(outputDir, name, CHILDREN_FILE));
    if (ended.length > 0) log.info(`ended ${ended.length} process(es) of a killed image build: ${ended.join(", ")}`);
  }
  await removeLeftovers({ log }, outputDir, { pattern: WORK_PATTERN, what: "image work folder(s)" });
}

interface InnerBuild {
  env: Record<string, string>;
  builderDir: string;
}

/**
 * Puts into the root what the build inside needs: the release tree with
 * this build's inputs, the extra CA certificates, t3-dispatch's source. The
 * settings passed in are this build's, with paths rewritten to those inside
 * the root; never the Vault token (an image holds no secret), never a cache.
 */
async function prepareBuild(options: ImageOptions, root: string, epoch: number): Promise<InnerBuild> {
  const builderDir = path.join(WORK_IN_ROOT, "builder");
  await writeReleaseTree(options.session, options.repoDir, path.join(root, builderDir));
  for (const name of ["roster.yaml", "packages.txt", "pins.json"])
    await fs.copyFile(path.join(options.inputsDir, name), path.join(root, builderDir, name));
  const settings = settingsEnvironment(options.settings);
  // The host's cache is no path in the root; the Ubuntu archives are the base's alone (the build inside
  // installs from the apt sources the base wrote).
  for (const setting of ["cacheDir", "ubuntuMirror", "ubuntuSecurityMirror"] as const)
    delete settings[settingVariables[setting]];
  const cas = options.settings.extraCaCerts.flatMap(certificateFiles);
  if (cas.length > 0) {
    await fs.mkdir(path.join(root, CA_IN_ROOT), { recursive: true });
    for (const file of cas)
      await fs.copyFile(file, path.join(root, CA_IN_ROOT, path.basename(file).replace(/\.(pem|crt)$/, "") + ".crt"));
    settings[settingVariables.extraCaCerts] = CA_IN_ROOT;
  }
  const dispatch = dispatchSource(options.settings, existsSync);
  if (existsSync(path.join(dispatch, "go.mod"))) {
    const inRoot = path.join(WORK_IN_ROOT, "t3-dispatch");
    await fs.cp(dispatch, path.join(root, inRoot), { recursive: true });
    settings[settingVariables.t3DispatchSource] = inRoot;
  } else {
    options.log.info(
      `warning: no t3-dispatch source at ${dispatch} (set ${settingVariables.t3DispatchSource}): the first boot builds it if the admin's checkout has it`,
    );
    delete settings[settingVariables.t3DispatchSource];
  }
  const passed = ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"].filter(
    (v) => process.env[v],
  );
  return {
    builderDir,
    env: {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/root",
      LC_ALL: "C",
      // dpkg, Python's byte-compiling and others read it.
      SOURCE_DATE_EPOCH: String(epoch),
      ...Object.fromEntries(passed.map((v) => [v, process.env[v]!])),
      ...settings,
    },
  };
}

/**
 * bootstrap.sh --for-image, chrooted into root, in a mount namespace of its
 * own: /proc, /sys, /dev and a /run of its own. Its environment is only what
 * prepareBuild chose, read from a file (0600) inside the root rather than
 * passed on the command line, where any user could read it (a proxy URL
 * may hold a password).
 */
async function buildInside(root: string, inner: InnerBuild, log: Logger): Promise<void> {
  const envFile = path.join(WORK_IN_ROOT, "build.env");
  const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
  await fs.writeFile(
    path.join(root, envFile),
    Object.entries(inner.env)
      .map(([k, v]) => `${k}=${quote(v)}\n`)
      .join(""),
    { mode: 0o600 },
  );
  const output = path.join(WORK_IN_ROOT, "output");
  const inside = `set -a && . ${envFile} && set +a && cd ${inner.builderDir} && exec ./bootstrap.sh --for-image --output ${output}`;
  // debootstrap copies the host's resolv.conf in; normalise.ts empties it again.
  const script = [
    "set -e",
    'mount -t proc proc "$0/proc"',
    'mount -t sysfs sysfs "$0/sys"',
    'mount --rbind /dev "$0/dev"',
    'mount -t tmpfs -o mode=0755 tmpfs "$0/run"',
    'cp /etc/resolv.conf "$0/etc/resolv.conf"',
    'exec chroot "$0" /usr/bin/env -i /bin/sh -c "$1" 2>&1',
  ].join("\n");
  try {
    await run({ log }, "unshare", ["--mount", "--propagation", "private", "sh", "-c", script, root, inside], {
      heartbeat: { label: "the build inside the image", everyMs: 0 },
      onStdoutLine: (line) => log.info(`| ${line}`),
      timeoutMs: 60 * 60_000,
    });
  } catch (error) {
    throw new UserError(
      `the build inside the image failed: ${(error as Error).message.split("\n")[0]}`,
      "its lines above (marked |) say which stage and why",
    );
  }
}

/** The unit that runs the image's builder on its first boot, enabled as `systemctl enable` would. */
async function installFirstBootUnit(repoDir: string, root: string): Promise<void> {
  const unitDir = path.join(root, "etc/systemd/system");
  await fs.mkdir(path.join(unitDir, "multi-user.target.wants"), { recursive: true });
  await fs.copyFile(path.join(repoDir, "files/image", FIRST_BOOT_UNIT), path.join(unitDir, FIRST_BOOT_UNIT));
  await fs.chmod(path.join(unitDir, FIRST_BOOT_UNIT), 0o644);
  await fs.symlink(
    `/etc/systemd/system/${FIRST_BOOT_UNIT}`,
    path.join(unitDir, "multi-user.target.wants", FIRST_BOOT_UNIT),
  );
  // Where first-boot.env goes: `docker cp` and `pct push` need the folder to be there.
  await fs.mkdir(path.join(root, FIRST_BOOT_ENV_DIR), { recursive: true, mode: 0o755 });
}
