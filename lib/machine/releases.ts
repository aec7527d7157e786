// The releases the devvm runs on, named in one place (docs/devvm.md
// "Releases"): a new box is Debian 13 or Ubuntu 24.04; the live devvm runs
// Ubuntu 24.04; Debian 12 stays supported. Everything that differs between
// them is a field here, read where it differs: pins.json's apt pins are keyed
// by `key`, the base of images and test boxes by `archive`.
import { existsSync, readFileSync } from "node:fs";
import { UserError } from "../core/errors.ts";

export interface AptSuiteExtra {
  /** The suite, e.g. bookworm-backports. */
  suite: string;
  /** An apt preferences Package: value (names or /regex/) that may come from it. */
  packages: string;
  /** Why: written into the files the apt stage installs. */
  why: string;
}

/**
 * Where a release's archive is kept as it was at any past moment: Debian's
 * snapshot archive (`<url>/debian/<YYYYMMDDTHHMMSSZ>/`, and
 * `debian-security` likewise), Ubuntu's snapshot service
 * (`<url>/ubuntu/<YYYYMMDDTHHMMSSZ>/`, every pocket in one). The apt stage
 * takes a pinned version from there when the mirror no longer offers it
 * (lib/machine/apt-snapshot.ts).
 */
export interface SnapshotArchive {
  /** The default address, DEVVM_APT_SNAPSHOT_URL's when unset. Plain http for Debian: apt checks the signatures, and no CA is needed. */
  url: string;
  /** Each archive under it, with the release's suites it serves. */
  archives: Array<{ path: string; suites: string[] }>;
}

export interface Release {
  /** `${ID}-${VERSION_ID}` of /etc/os-release: the key of its apt pins in pins.json. */
  key: string;
  /** As people say it. */
  name: string;
  /** /etc/os-release's ID, VERSION_ID and VERSION_CODENAME. */
  id: "debian" | "ubuntu";
  versionId: string;
  codename: string;
  /** The apt archive a fresh VM of this release has: its suites and components. */
  archive: {
    suites: string[];
    /** The suite served by the security archive (Debian's debian-security, Ubuntu's own). */
    securitySuite: string;
    components: string[];
  };
  /**
   * tmux 3.4 or newer built with systemd starts each pane in a transient
   * `tmux-spawn-<uuid>.scope` of the user's manager; Debian 12's tmux 3.3a
   * makes none, so a pane's command there starts its own scope.
   */
  tmuxPaneScopes: boolean;
  /** A suite beside the release's own that some packages come from, with an apt preference for only those. */
  extraSuite?: AptSuiteExtra;
  /** Its archive's snapshots, for pins the mirror no longer offers. */
  snapshot: SnapshotArchive;
}

/** The keyring of a release's archive keys, which sign its mirror and its snapshots alike. */
export const archiveKeyring = (release: Release) => `/usr/share/keyrings/${release.id}-archive-keyring.gpg`;

const DEBIAN_SNAPSHOTS = "http://snapshot.debian.org/archive";
const debianSnapshot = (codename: string, extra: string[] = []): SnapshotArchive => ({
  url: DEBIAN_SNAPSHOTS,
  archives: [
    { path: "debian", suites: [codename, `${codename}-updates`, ...extra] },
    { path: "debian-security", suites: [`${codename}-security`] },
  ],
});

export const RELEASES: readonly Release[] = [
  {
    key: "debian-13",
    name: "Debian 13 (trixie)",
    id: "debian",
    versionId: "13",
    codename: "trixie",
    archive: { suites: ["trixie", "trixie-updates"], securitySuite: "trixie-security", components: ["main"] },
    tmuxPaneScopes: true,
    snapshot: debianSnapshot("trixie"),
  },
  {
    key: "ubuntu-24.04",
    name: "Ubuntu 24.04 LTS (noble)",
    id: "ubuntu",
    versionId: "24.04",
    codename: "noble",
    // ripgrep, fd-find, podman, shellcheck and tree are in universe, which a fresh Ubuntu has enabled.
    archive: { suites: ["noble", "noble-updates"], securitySuite: "noble-security", components: ["main", "universe"] },
    tmuxPaneScopes: true,
    // Ubuntu's snapshot service serves the security pocket beside the others (https, as Ubuntu documents it).
    snapshot: {
      url: "https://snapshot.ubuntu.com",
      archives: [{ path: "ubuntu", suites: ["noble", "noble-updates", "noble-security"] }],
    },
  },
  {
    key: "debian-12",
    name: "Debian 12 (bookworm)",
    id: "debian",
    versionId: "12",
    codename: "bookworm",
    archive: { suites: ["bookworm", "bookworm-updates"], securitySuite: "bookworm-security", components: ["main"] },
    tmuxPaneScopes: false,
    // t3-dispatch's source declares go 1.22; bookworm's own golang-go is 1.19.
    extraSuite: {
      suite: "bookworm-backports",
      packages: "/^golang-(go|src|doc|any|1\\.[0-9]+(-go|-src|-doc)?)$/",
      why: "t3-dispatch needs Go 1.22 or newer; bookworm's own golang-go is 1.19",
    },
    snapshot: debianSnapshot("bookworm", ["bookworm-backports"]),
  },
];

/** The supported releases as one phrase, for messages. */
export const SUPPORTED_RELEASES = RELEASES.map((r) => r.name).join(", ");

export function releaseByKey(key: string): Release | undefined {
  return RELEASES.find((r) => r.key === key);
}

/** /etc/os-release's KEY=value lines (values unquoted). */
export function parseOsRelease(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\n")
      .map((line) => /^([A-Z_]+)=(["']?)(.*)\2$/.exec(line.trim()))
      .filter((m) => m !== null)
      .map((m) => [m[1]!, m[3]!]),
  );
}

/** The supported release an /etc/os-release names, if it names one. */
export function releaseOf(osRelease: string): Release | undefined {
  const fields = parseOsRelease(osRelease);
  return RELEASES.find((r) => r.id === fields.ID && r.versionId === fields.VERSION_ID);
}

/**
 * The release of the machine whose root is `root` ("/" for this one): its
 * os-release, or this host's for a bare --root folder that has none yet.
 * Throws a UserError naming the supported releases for any other.
 */
export function machineRelease(root: string): Release {
  const own = `${root.replace(/\/+$/, "")}/etc/os-release`;
  const file = existsSync(own) ? own : "/etc/os-release";
  const text = readFileSync(file, "utf8");
  const release = releaseOf(text);
  if (!release)
    throw new UserError(
      `this is ${parseOsRelease(text).PRETTY_NAME ?? "an unknown system"} (${file}); the devvm runs on ${SUPPORTED_RELEASES}`,
      `run the builder on one of those`,
    );
  return release;
}
