// Which Debian mirror debootstrap should use: the one this host's apt already
// uses, read at run time, so no mirror host name lives in the repository and
// the image builds wherever the host itself can install packages.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";

const SOURCES_DIR = "/etc/apt/sources.list.d";
const SOURCES_LIST = "/etc/apt/sources.list";

/** The host's main Debian mirror, or undefined to let debootstrap use its default. */
export async function findHostDebianMirror(): Promise<string | undefined> {
  for (const uri of await listHostAptUris()) {
    // The main archive, not debian-security or debian-debug.
    if (new URL(uri).pathname.replace(/\/+$/, "").endsWith("/debian")) return uri;
  }
  return undefined;
}

/** The host's security mirror (path ending in /debian-security), if it has one. */
export async function findHostSecurityMirror(): Promise<string | undefined> {
  return (await listHostAptUris()).find((uri) =>
    new URL(uri).pathname.replace(/\/+$/, "").endsWith("/debian-security"),
  );
}

async function listHostAptUris(): Promise<string[]> {
  const uris: string[] = [];
  for (const name of (await readdir(SOURCES_DIR).catch(() => [])).sort()) {
    if (name.endsWith(".sources")) uris.push(...parseDeb822Uris(await readText(join(SOURCES_DIR, name))));
    if (name.endsWith(".list")) uris.push(...parseOneLineUris(await readText(join(SOURCES_DIR, name))));
  }
  uris.push(...parseOneLineUris(await readText(SOURCES_LIST)));
  return uris.filter(isHttpUri);
}

/** `URIs:` fields of deb822 stanzas that offer binary packages (`Types: deb`). */
export function parseDeb822Uris(text: string): string[] {
  const uris: string[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) =>
      stanza
        .match(new RegExp(`^${name}:[ \\t]*(.*)$`, "im"))?.[1]
        ?.trim()
        .split(/\s+/) ?? [];
    if (field("Enabled")[0]?.toLowerCase() === "no") continue;
    if (field("Types").includes("deb")) uris.push(...field("URIs"));
  }
  return uris;
}

/** URIs of `deb [options] URI suite ...` lines. */
export function parseOneLineUris(text: string): string[] {
  const uris: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw
      .replace(/#.*/, "")
      .replace(/\[[^\]]*\]/, "")
      .trim();
    const [type, uri] = line.split(/\s+/);
    if (type === "deb" && uri) uris.push(uri);
  }
  return uris;
}

function isHttpUri(uri: string): boolean {
  return /^https?:\/\//.test(uri);
}

async function readText(path: string): Promise<string> {
  return readFile(path, "utf8").catch(() => "");
}
