// The machine's apt sources as apt reads them (one-line .list files and
// deb822 .sources files), and the files the apt stage adds for a release
// whose pins come partly from a suite beside its own (bookworm's backports,
// lib/machine/releases.ts).
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "../core/errors.ts";
import type { FileResource } from "./files.ts";
import { archiveKeyring, type Release } from "./releases.ts";

export const SOURCES_LIST = "/etc/apt/sources.list";
export const SOURCES_DIR = "/etc/apt/sources.list.d";

/** A binary package source: its URI and the suites it serves. */
export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
  /** The file it was read from, for messages. */
  file: string;
}

/** `deb [options] URI suite component...` lines. */
export function parseOneLineSources(text: string, file: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw
      .replace(/#.*/, "")
      .replace(/\[[^\]]*\]/, "")
      .trim();
    const [type, uri, suite, ...components] = line.split(/\s+/);
    if (type === "deb" && uri && suite) sources.push({ uri, suites: [suite], components, file });
  }
  return sources;
}

/** deb822 stanzas that offer binary packages (`Types: deb`) and are not disabled. */
export function parseDeb822Sources(text: string, file: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) =>
      stanza
        .match(new RegExp(`^${name}:[ \\t]*(.*)$`, "im"))?.[1]
        ?.trim()
        .split(/\s+/)
        .filter(Boolean) ?? [];
    if (field("Enabled")[0]?.toLowerCase() === "no" || !field("Types").includes("deb")) continue;
    for (const uri of field("URIs"))
      sources.push({ uri, suites: field("Suites"), components: field("Components"), file });
  }
  return sources;
}

/** Every binary source of the machine under `root` ("/" for this one), sources.list.d in name order, then sources.list. */
export function readAptSources(root: string): AptSource[] {
  const at = (machinePath: string) => path.join(root, machinePath);
  const read = (machinePath: string) => {
    try {
      return readFileSync(at(machinePath), "utf8");
    } catch {
      return "";
    }
  };
  const sources: AptSource[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(at(SOURCES_DIR)).sort();
  } catch {
    // No sources.list.d: only sources.list.
  }
  for (const name of names) {
    const file = `${SOURCES_DIR}/${name}`;
    if (name.endsWith(".sources")) sources.push(...parseDeb822Sources(read(file), file));
    if (name.endsWith(".list")) sources.push(...parseOneLineSources(read(file), file));
  }
  sources.push(...parseOneLineSources(read(SOURCES_LIST), SOURCES_LIST));
  return sources;
}

/** The files for a release's extra suite; none for a release without one. */
export function extraSuiteFiles(release: Release, sources: AptSource[]): FileResource[] {
  const extra = release.extraSuite;
  if (!extra) return [];
  // The extra suite is served by the archive that serves the release itself.
  const own = sources.find((s) => s.suites.includes(release.codename) && /^https?:\/\//.test(s.uri));
  if (!own)
    throw new UserError(
      `no apt source in ${SOURCES_LIST} or ${SOURCES_DIR}/ serves ${release.codename}, so ${extra.suite} has no archive to come from`,
      `add the ${release.name} archive to the apt sources (as a fresh ${release.name} has it)`,
    );
  const header = `# Written by the devvm builder (apt stage): ${extra.why}.\n`;
  return [
    {
      kind: "file",
      path: `${SOURCES_DIR}/devvm-${extra.suite}.sources`,
      mode: 0o644,
      content:
        header +
        `Types: deb\nURIs: ${own.uri}\nSuites: ${extra.suite}\nComponents: main\n` +
        `Signed-By: ${archiveKeyring(release)}\n`,
    },
    {
      // apt gives a backports suite priority 100: only these packages are raised to the release's 500, so
      // the newer of the two is their candidate (what `lock` records) and nothing else ever comes from it.
      kind: "file",
      path: `/etc/apt/preferences.d/devvm-${extra.suite}`,
      mode: 0o644,
      content: `${header}Package: ${extra.packages}\nPin: release n=${extra.suite}\nPin-Priority: 500\n`,
    },
  ];
}
