// What differs between two root file system archives, entry by entry, so
// that a reproducibility regression is found in one read (`npm run repro`):
// the path, and what differs (content hash, mode, owner, size, link
// target, type, time), or that one archive lacks it.
import { createHash } from "node:crypto";
import * as tar from "tar";

export interface ArchiveEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkpath: string;
  /** Seconds since 1970. */
  mtime: number;
  /** sha256 of the content (of nothing, for what has none). */
  sha256: string;
}

/** Every entry of a .tar.gz, by path ("./etc/hostname"; folders without their trailing slash). */
export async function readArchive(file: string): Promise<Map<string, ArchiveEntry>> {
  const entries = new Map<string, ArchiveEntry>();
  await tar.t({
    file,
    onReadEntry: (entry) => {
      const hash = createHash("sha256");
      entry.on("data", (chunk: Buffer) => hash.update(chunk));
      entry.on("end", () => {
        entries.set(entry.path.replace(/(.)\/$/, "$1"), {
          type: String(entry.type),
          mode: entry.mode ?? 0,
          uid: entry.uid ?? 0,
          gid: entry.gid ?? 0,
          size: entry.size ?? 0,
          linkpath: entry.linkpath ?? "",
          mtime: entry.mtime ? Math.floor(entry.mtime.getTime() / 1000) : 0,
          sha256: hash.digest("hex"),
        });
      });
    },
  });
  return entries;
}

export interface EntryDifference {
  path: string;
  /** "only in A", "only in B", or what differs: "content a1b2c3d4… → e5f6…", "mode 0644 → 0600", ... */
  what: string[];
}

/** The entries that differ, in path order; empty when the archives hold the same entries. */
export function diffArchives(
  a: Map<string, ArchiveEntry>,
  b: Map<string, ArchiveEntry>,
  [nameA, nameB] = ["A", "B"],
): EntryDifference[] {
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  const differences: EntryDifference[] = [];
  for (const path of paths) {
    const x = a.get(path);
    const y = b.get(path);
    if (!x || !y) {
      differences.push({ path, what: [`only in ${x ? nameA : nameB}`] });
      continue;
    }
    const what: string[] = [];
    if (x.type !== y.type) what.push(`type ${x.type} → ${y.type}`);
    if (x.sha256 !== y.sha256) what.push(`content ${x.sha256.slice(0, 12)}… → ${y.sha256.slice(0, 12)}…`);
    if (x.size !== y.size) what.push(`size ${x.size} → ${y.size}`);
    if (x.mode !== y.mode) what.push(`mode ${octal(x.mode)} → ${octal(y.mode)}`);
    if (x.uid !== y.uid || x.gid !== y.gid) what.push(`owner ${x.uid}:${x.gid} → ${y.uid}:${y.gid}`);
    if (x.linkpath !== y.linkpath) what.push(`link ${x.linkpath || "(none)"} → ${y.linkpath || "(none)"}`);
    if (x.mtime !== y.mtime) what.push(`mtime ${x.mtime} → ${y.mtime}`);
    if (what.length > 0) differences.push({ path, what });
  }
  return differences;
}

export function formatArchiveDifferences(differences: EntryDifference[]): string {
  return differences.map((d) => `  ${d.path}: ${d.what.join(", ")}`).join("\n");
}

const octal = (mode: number) => mode.toString(8).padStart(4, "0");
