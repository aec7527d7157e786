// Which Debian mirror debootstrap should use: the one this host's apt already
// uses, read at run time, so no mirror host name lives in the repository and
// the image builds wherever the host itself can install packages.
import { readAptSources } from "../machine/apt-sources.ts";

/** The host's main Debian mirror, or undefined to let debootstrap use its default. */
export async function findHostDebianMirror(): Promise<string | undefined> {
  // The main archive, not debian-security or debian-debug.
  return hostHttpUris().find((uri) => new URL(uri).pathname.replace(/\/+$/, "").endsWith("/debian"));
}

/** The host's security mirror (path ending in /debian-security), if it has one. */
export async function findHostSecurityMirror(): Promise<string | undefined> {
  return hostHttpUris().find((uri) => new URL(uri).pathname.replace(/\/+$/, "").endsWith("/debian-security"));
}

/** The URIs of this host's binary apt sources (lib/machine/apt-sources.ts), http(s) only. */
function hostHttpUris(): string[] {
  return readAptSources("/")
    .map((source) => source.uri)
    .filter((uri) => /^https?:\/\//.test(uri));
}
