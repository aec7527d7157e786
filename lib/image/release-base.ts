// A release's root file system made here, from the release's own archive: no
// registry, no image from elsewhere. What a fresh VM of that release has
// before the builder runs: the minimal set (debootstrap's minbase: the
// Essential and Priority: required packages, and apt) plus systemd as init,
// and the apt sources such a VM has. The container tests' base images
// (test/support/harness/base-image.ts) and `build.ts image` both start from it.
//
// Debian's with debootstrap, from this host's Debian mirror (host-mirror.ts).
// Ubuntu's with mmdebstrap: Debian 12's debootstrap has no script for noble,
// and mmdebstrap takes the Ubuntu keyring as a file (ubuntu-keyring.ts).
import { promises as fs } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BuildContext, Logger } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import type { Settings } from "../inputs/settings.ts";
import { run } from "../machine/exec.ts";
import type { Release } from "../machine/releases.ts";
import { findHostDebianMirror, findHostSecurityMirror } from "./host-mirror.ts";
import { fetchUbuntuArchiveKeyring, UBUNTU_KEYRING, type KeyringPackage } from "./ubuntu-keyring.ts";

/** Ubuntu's own archives, as a fresh Ubuntu's apt sources name them: the settings' defaults. */
export const UBUNTU_ARCHIVES = {
  archive: "http://archive.ubuntu.com/ubuntu",
  security: "http://security.ubuntu.com/ubuntu",
};
/** Debian's own, for a host that has no Debian mirror of its own (debootstrap's default too). */
export const DEBIAN_ARCHIVES = {
  archive: "http://deb.debian.org/debian",
  security: "http://deb.debian.org/debian-security",
};

/** Where a base's apt sources are written, and how. */
export type AptSourcesFile =
  { format: "one-line"; path: string } | { format: "deb822"; path: string; signedBy: string };

/** How one release's base is made: everything that decides its content (with the mirrors). */
export interface ReleaseBase {
  release: string;
  codename: string;
  tool: "debootstrap" | "mmdebstrap";
  variant: "minbase";
  include: string[];
  archive: Release["archive"];
  aptSources: AptSourcesFile;
  /** The keyring the archive is checked with, when the host has none of its own (Ubuntu's). */
  keyring?: KeyringPackage;
}

/** The archives a base is made from and that its apt sources name. */
export interface BaseMirrors {
  archive: string;
  security: string;
}

// minbase has no init; a VM boots systemd. dbus is left out: systemd reaches
// `running` without it and root's systemctl does not need it (only
// hostnamectl, loginctl and the like do).
const INIT = ["systemd", "systemd-sysv"];

/** What differs per release beyond lib/machine/releases.ts: how its base is made and its sources file. */
const MAKERS: Record<string, Pick<ReleaseBase, "tool" | "include" | "aptSources" | "keyring">> = {
  "debian-13": {
    tool: "debootstrap",
    include: INIT,
    // As Debian's own trixie images (cloud, container) have them; trixie's keyring is .pgp (.gpg a link to it).
    aptSources: {
      format: "deb822",
      path: "/etc/apt/sources.list.d/debian.sources",
      signedBy: "/usr/share/keyrings/debian-archive-keyring.pgp",
    },
  },
  "ubuntu-24.04": {
    tool: "mmdebstrap",
    // mmdebstrap's minbase is the Priority: required set, and Ubuntu's apt is
    // `important`: named here, as debootstrap's minbase adds it (with it comes
    // ubuntu-keyring, the Signed-By of the sources).
    include: ["apt", ...INIT],
    aptSources: {
      format: "deb822",
      path: "/etc/apt/sources.list.d/ubuntu.sources",
      signedBy: "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
    },
    keyring: UBUNTU_KEYRING,
  },
  // One-line sources.list, as the Debian 12 base has had them from the start.
  "debian-12": {
    tool: "debootstrap",
    include: INIT,
    aptSources: { format: "one-line", path: "/etc/apt/sources.list" },
  },
};

/** The recipe of `release`'s base. */
export function releaseBase(release: Release): ReleaseBase {
  const maker = MAKERS[release.key];
  if (!maker) throw new Error(`no base recipe for ${release.key} in lib/image/release-base.ts`);
  return { release: release.key, codename: release.codename, variant: "minbase", archive: release.archive, ...maker };
}

/** The archives of `release`'s base: the settings' for Ubuntu, this host's Debian mirrors for Debian. */
export async function baseMirrors(
  release: Release,
  settings: Pick<Settings, "ubuntuMirror" | "ubuntuSecurityMirror">,
): Promise<BaseMirrors> {
  if (release.id === "ubuntu")
    return {
      archive: settings.ubuntuMirror ?? UBUNTU_ARCHIVES.archive,
      security: settings.ubuntuSecurityMirror ?? UBUNTU_ARCHIVES.security,
    };
  // Same mirrors as the host, so `build.ts lock` run on the host pins versions the base can install.
  return {
    archive: (await findHostDebianMirror()) ?? DEBIAN_ARCHIVES.archive,
    security: (await findHostSecurityMirror()) ?? DEBIAN_ARCHIVES.security,
  };
}

type BaseContext = Pick<BuildContext, "log" | "settings" | "session">;

/** Makes `release`'s base into rootDir (a new, empty folder) and writes its apt sources. */
export async function makeReleaseBase(ctx: BaseContext, release: Release, rootDir: string): Promise<void> {
  const base = releaseBase(release);
  const mirrors = await baseMirrors(release, ctx.settings);
  await requireTool(ctx, base.tool, release);
  const started = Date.now();
  if (base.tool === "debootstrap") await debootstrap(ctx.log, base, rootDir, mirrors);
  else await mmdebstrap(ctx, base, rootDir, mirrors);
  await writeAptSources(rootDir, base, mirrors);
  // Downloaded .debs would only make the result bigger.
  const archives = path.join(rootDir, "var/cache/apt/archives");
  for (const name of await fs.readdir(archives).catch(() => [])) {
    if (name.endsWith(".deb")) await fs.rm(path.join(archives, name));
  }
  ctx.log.info(`${release.name} base made in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

async function requireTool(ctx: BaseContext, tool: ReleaseBase["tool"], release: Release): Promise<void> {
  if ((await run(ctx, "sh", ["-c", `command -v ${tool}`], { okCodes: [1, 127] })).exitCode !== 0)
    throw new UserError(`${tool} is not installed: it makes the ${release.name} base`, `apt-get install ${tool}`);
}

async function debootstrap(log: Logger, base: ReleaseBase, rootDir: string, mirrors: BaseMirrors): Promise<void> {
  const args = [`--variant=${base.variant}`, `--include=${base.include.join(",")}`];
  try {
    await run({ log }, "debootstrap", [...args, base.codename, rootDir, mirrors.archive], {
      heartbeat: { label: `debootstrap ${base.codename} (${base.variant}) from ${mirrors.archive}` },
      timeoutMs: 30 * 60_000,
    });
  } catch (error) {
    // debootstrap prints its "E:" lines on stdout; the details are in its log in the target.
    const detail = await fs.readFile(path.join(rootDir, "debootstrap/debootstrap.log"), "utf8").catch(() => "");
    if (detail) log.info(detail.trim().split("\n").slice(-20).join("\n"));
    throw error;
  }
}

async function mmdebstrap(ctx: BaseContext, base: ReleaseBase, rootDir: string, mirrors: BaseMirrors): Promise<void> {
  // The keyring is unpacked outside the root: it is no part of the base (ubuntu-keyring, installed with apt, is).
  const keys = await mkdtemp(path.join(tmpdir(), "devvm-keyring-"));
  try {
    const keyring = base.keyring && (await fetchUbuntuArchiveKeyring(ctx, mirrors.archive, keys, base.keyring));
    const args = [
      `--variant=${base.variant}`,
      `--include=${base.include.join(",")}`,
      `--components=${base.archive.components.join(",")}`,
      ...(keyring ? [`--keyring=${keyring}`] : []),
    ];
    await run(ctx, "mmdebstrap", [...args, base.codename, rootDir, mirrors.archive], {
      heartbeat: { label: `mmdebstrap ${base.codename} (${base.variant}) from ${mirrors.archive}` },
      timeoutMs: 30 * 60_000,
    });
  } finally {
    await fs.rm(keys, { recursive: true, force: true });
  }
}

/** Replaces the one-suite sources.list debootstrap or mmdebstrap wrote with the release's own. */
async function writeAptSources(rootDir: string, base: ReleaseBase, mirrors: BaseMirrors): Promise<void> {
  await fs.rm(path.join(rootDir, "etc/apt/sources.list"), { force: true });
  const file = path.join(rootDir, base.aptSources.path);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, renderAptSources(base, mirrors), { mode: 0o644 });
}

/**
 * A fresh VM's apt sources: the release's suites from the archive, its
 * security suite from the security archive, with the release's components.
 */
export function renderAptSources(base: Pick<ReleaseBase, "archive" | "aptSources">, mirrors: BaseMirrors): string {
  const { suites, securitySuite, components } = base.archive;
  const groups = [
    { uri: mirrors.archive, suites },
    { uri: mirrors.security, suites: [securitySuite] },
  ];
  const sources = base.aptSources;
  if (sources.format === "one-line")
    return groups.flatMap((g) => g.suites.map((suite) => `deb ${g.uri} ${suite} ${components.join(" ")}\n`)).join("");
  return groups
    .map((g) =>
      [
        "Types: deb",
        `URIs: ${g.uri}`,
        `Suites: ${g.suites.join(" ")}`,
        `Components: ${components.join(" ")}`,
        `Signed-By: ${sources.signedBy}`,
      ].join("\n"),
    )
    .join("\n\n")
    .concat("\n");
}
