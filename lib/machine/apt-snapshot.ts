// Pins the mirror no longer offers, from the archive's snapshot (docs/devvm.md
// "Pins stay obtainable"). A Debian mirror keeps only the newest version of a
// package: within weeks of a `lock`, a point release or a security update
// removes a pinned one. Debian's snapshot archive (and Ubuntu's snapshot
// service) keeps every state the archive ever published, signed by the same
// archive keys; `lock` records when it asked the mirror (pins.json
// aptSnapshot), and the apt stage asks the snapshot at that time for what
// the mirror lacks.
//
// The snapshot's source is added for one run only, and never to /etc/apt:
// apt is pointed (Dir::Etc::SourceParts) at a scratch copy of the machine's
// sources.list.d with the snapshot's stanzas beside them. A killed build
// leaves that scratch folder, which the next one removes (LEFTOVERS), and
// lists apt no longer reads (it reads only those of configured sources; the
// next plain `apt-get update` deletes them).
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { SOURCES_DIR } from "./apt-sources.ts";
import { LEFTOVERS, removeLeftovers, scratchPrefix } from "./leftovers.ts";
import { archiveKeyring, type Release } from "./releases.ts";

/** The snapshot archive a release's pins come from at a time: its stanzas' addresses, and the keyring that checks them. */
export interface SnapshotSource {
  /** As pins.json records it: 20261203T101500Z. */
  time: string;
  /** DEVVM_APT_SNAPSHOT_URL, else the release's own snapshot archive. */
  base: string;
  keyring: string;
  /** One per archive under the base: `<base>/<archive>/<time>/` and the release's suites it serves. */
  stanzas: Array<{ uri: string; suites: string[] }>;
}

export function snapshotSource(
  release: Release,
  time: string,
  settings: { aptSnapshotUrl?: string | undefined; aptSnapshotKeyring?: string | undefined },
): SnapshotSource {
  const base = settings.aptSnapshotUrl ?? release.snapshot.url;
  return {
    time,
    base,
    keyring: settings.aptSnapshotKeyring ?? archiveKeyring(release),
    stanzas: release.snapshot.archives.map((a) => ({ uri: `${base}/${a.path}/${time}/`, suites: a.suites })),
  };
}

/**
 * The deb822 stanzas of the snapshot source. `Check-Valid-Until: no`: a
 * snapshot's Release files carry the Valid-Until of their day, long past.
 */
export function snapshotSourcesFile(release: Release, source: SnapshotSource): string {
  const header =
    `# Added by the devvm builder's apt stage for one run, never to /etc/apt: pinned versions the mirror\n` +
    `# no longer offers, from the snapshot of ${release.name}'s archive at ${source.time} (pins.json aptSnapshot).\n`;
  return (
    header +
    source.stanzas
      .map(
        (s) =>
          `Types: deb\nURIs: ${s.uri}\nSuites: ${s.suites.join(" ")}\nComponents: ${release.archive.components.join(" ")}\n` +
          `Signed-By: ${source.keyring}\nCheck-Valid-Until: no\n`,
      )
      .join("\n")
  );
}

/** The name of the snapshot's file in the scratch sources.list.d. */
export const SNAPSHOT_SOURCES_NAME = "zz-devvm-snapshot.sources";

/**
 * A scratch sources.list.d: the machine's own files (copied; only those apt
 * reads, *.list and *.sources) and the snapshot's. `options` are apt's
 * arguments that use it; `remove` deletes it.
 */
export async function scratchSourceParts(
  ctx: Pick<BuildContext, "log" | "root">,
  release: Release,
  source: SnapshotSource,
): Promise<{ dir: string; options: string[]; remove: () => Promise<void> }> {
  await removeLeftovers(ctx, tmpdir(), LEFTOVERS.aptSnapshot);
  const dir = await fs.mkdtemp(path.join(tmpdir(), scratchPrefix("devvm-apt-snapshot-")));
  const remove = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const own = path.join(ctx.root, SOURCES_DIR);
    const names = (await fs.readdir(own).catch(() => [] as string[])).filter((n) => /\.(list|sources)$/.test(n));
    for (const name of names) {
      const file = path.join(own, name);
      // What apt reads: a file, or a link to one (root's own /etc/apt: no user plants links there).
      if ((await fs.stat(file).catch(() => null))?.isFile()) await fs.copyFile(file, path.join(dir, name));
    }
    await fs.writeFile(path.join(dir, SNAPSHOT_SOURCES_NAME), snapshotSourcesFile(release, source), { mode: 0o644 });
  } catch (error) {
    await remove();
    throw error;
  }
  return { dir, options: ["-o", `Dir::Etc::SourceParts=${dir}`], remove };
}

/** `apt-cache madison` output: package -> the versions the configured sources offer. */
export function parseMadison(stdout: string): Map<string, string[]> {
  const offered = new Map<string, string[]>();
  for (const line of stdout.split("\n")) {
    // "      curl | 8.14.1-2+deb13u7 | http://deb.debian.org/debian trixie/main amd64 Packages"
    const [name, version, from] = line.split("|").map((f) => f.trim());
    // A "Sources" line is a source package's, not something apt can install.
    if (!name || !version || / Sources$/.test(from ?? "")) continue;
    const versions = offered.get(name) ?? [];
    if (!versions.includes(version)) versions.push(version);
    offered.set(name, versions);
  }
  return offered;
}

/**
 * The exact dependencies (`name (= version)`, not among alternatives) in
 * `apt-cache show NAME=VERSION`'s Depends and Pre-Depends: an older curl
 * needs the libcurl of its own version, which apt will not pick by itself
 * while the mirror offers a newer one.
 */
export function exactDependencies(show: string): Array<{ name: string; version: string }> {
  const found: Array<{ name: string; version: string }> = [];
  // One record: apt-cache show of NAME=VERSION prints that version's.
  const record = show.split(/\n\s*\n/)[0] ?? "";
  for (const field of ["Pre-Depends", "Depends"]) {
    const value = new RegExp(`^${field}: (.*(?:\\n[ \\t].*)*)`, "m").exec(record)?.[1];
    if (!value) continue;
    for (const item of value.replace(/\n[ \t]+/g, " ").split(",")) {
      if (item.includes("|")) continue;
      const m = /^\s*([a-z0-9][a-z0-9+.-]+)(?::[a-z0-9-]+)?\s*\(\s*=\s*([^)\s]+)\s*\)\s*$/.exec(item);
      if (m) found.push({ name: m[1]!, version: m[2]! });
    }
  }
  return found;
}
