// What differs between two builds of the same image although nothing that
// matters does, and what is done about it before the archive is written.
// One table: each entry names the path, the action and the reason.
// (mmdebstrap and mkosi normalise the same things for the same reasons.)
import { promises as fs } from "node:fs";
import path from "node:path";

export type Action =
  /** The path, and all below it, is left out. */
  | "remove"
  /** A file is kept, empty. */
  | "empty"
  /** A folder is kept, empty. */
  | "clear"
  /** /etc/shadow's "last password change" field (days) is set from SOURCE_DATE_EPOCH. */
  | "shadow-dates";

export interface Normalisation {
  /** A machine path; a `*` in the last segment matches any name there. */
  path: string;
  action: Action;
  reason: string;
}

export const NORMALISATIONS: readonly Normalisation[] = [
  {
    path: "/etc/machine-id",
    action: "empty",
    reason: "a machine's identity: systemd makes one on first boot when the file is empty",
  },
  {
    path: "/var/lib/dbus/machine-id",
    action: "remove",
    reason: "a copy of the machine's identity; dbus links it to /etc/machine-id again",
  },
  {
    path: "/var/lib/systemd/random-seed",
    action: "remove",
    reason: "a random seed shared by every machine made from the image would seed them all alike",
  },
  {
    path: "/var/lib/systemd/credential.secret",
    action: "remove",
    reason: "the machine's own key for encrypted credentials",
  },
  {
    path: "/etc/resolv.conf",
    action: "empty",
    reason:
      "the build machine's name servers (debootstrap copies them in); the container engine or Proxmox writes the guest's",
  },
  {
    path: "/etc/hostname",
    action: "empty",
    reason: "the build machine's name (debootstrap copies it in); the container engine or Proxmox names the guest",
  },
  { path: "/var/log", action: "clear", reason: "the build's logs (apt, dpkg, alternatives, journal) hold its times" },
  { path: "/var/cache/apt/*.bin", action: "remove", reason: "apt's caches of the package lists; apt remakes them" },
  {
    path: "/var/cache/apt/archives/*.deb",
    action: "remove",
    reason: "downloaded packages: installed already, and fetched again when needed",
  },
  {
    path: "/var/lib/apt/lists/*_*",
    action: "remove",
    reason: "the mirror's package lists as of the build's time; the next apt-get update fetches them",
  },
  {
    path: "/var/cache/ldconfig/aux-cache",
    action: "remove",
    reason: "ldconfig's record of file times and inodes; ldconfig remakes it",
  },
  {
    path: "/var/cache/debconf/*-old",
    action: "remove",
    reason: "debconf's backups from before the build's last change",
  },
  { path: "/var/lib/dpkg/*-old", action: "remove", reason: "dpkg's backups from before the build's last change" },
  {
    path: "/etc/*-",
    action: "remove",
    reason: "backups of passwd, group, shadow and gshadow from before the build's last account change",
  },
  { path: "/etc/shadow", action: "shadow-dates", reason: "each account's last password change is the day it was made" },
  {
    path: "/var/lib/systemd/catalog/database",
    action: "remove",
    reason: "journalctl's message catalog, built with the build's time; remade on first boot",
  },
  {
    path: "/root/.npm",
    action: "remove",
    reason: "npm's cache: downloaded tarballs and an index of when they were fetched",
  },
  { path: "/root/.cache", action: "remove", reason: "caches of tools the build ran" },
  { path: "/tmp", action: "clear", reason: "scratch space of the build" },
  { path: "/var/tmp", action: "clear", reason: "scratch space of the build" },
];

/** Applies the table to the tree at rootDir (an image's root); returns what it did, one line per path. */
export async function normaliseRoot(
  rootDir: string,
  sourceDateEpoch: number,
  table: readonly Normalisation[] = NORMALISATIONS,
): Promise<string[]> {
  const done: string[] = [];
  for (const rule of table) {
    for (const machinePath of await matches(rootDir, rule.path)) {
      const full = path.join(rootDir, machinePath);
      const stat = await fs.lstat(full).catch(() => null);
      if (!stat) continue;
      if (rule.action === "remove") await fs.rm(full, { recursive: true, force: true });
      else if (rule.action === "empty" && stat.isFile()) await fs.truncate(full, 0);
      else if (rule.action === "clear" && stat.isDirectory())
        for (const name of await fs.readdir(full)) await fs.rm(path.join(full, name), { recursive: true, force: true });
      else if (rule.action === "shadow-dates" && stat.isFile())
        await fs.writeFile(full, shadowWithDates(await fs.readFile(full, "utf8"), sourceDateEpoch));
      else continue;
      done.push(`${rule.action} ${machinePath}`);
    }
  }
  return done;
}

/** The machine paths under rootDir that a table path names (sorted). */
async function matches(rootDir: string, pattern: string): Promise<string[]> {
  const dir = path.posix.dirname(pattern);
  const last = path.posix.basename(pattern);
  if (!last.includes("*")) return [pattern];
  const re = new RegExp(
    `^${last
      .split("*")
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
  const names = await fs.readdir(path.join(rootDir, dir)).catch(() => [] as string[]);
  return names
    .filter((name) => re.test(name))
    .sort()
    .map((name) => path.posix.join(dir, name));
}

/** shadow(5): the third field is the day of the last password change; kept empty where it is. */
function shadowWithDates(text: string, sourceDateEpoch: number): string {
  const day = String(Math.floor(sourceDateEpoch / 86_400));
  return text
    .split("\n")
    .map((line) => {
      const fields = line.split(":");
      if (fields.length < 3 || fields[2] === "") return line;
      fields[2] = day;
      return fields.join(":");
    })
    .join("\n");
}
