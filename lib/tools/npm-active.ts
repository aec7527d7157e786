// Which version of a global npm CLI is active: the /usr/local/bin link and
// the package.json it leads to, never a PATH lookup (docs/devvm.md stage 4:
// a personal ~/.local/bin/claude once shadowed the system install) and never
// npm itself (a repeated `npm install -g` reinstalls: ~9 s against 40 ms).
import { promises as fs } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import type { Pins } from "../inputs/pins.ts";
import { BIN_DIR, NPM_CLI_ROOT } from "../machine/layout.ts";

export interface GlobalCli {
  /** The npm package, e.g. "@openai/codex"; pins.json's npm section pins it. */
  name: keyof Pins["npm"];
  /** Its commands: exactly the keys of its package.json "bin"; linked into /usr/local/bin. */
  bins: string[];
  /** Packages whose install scripts may run; any other install script fails the install. */
  allowScripts?: string[];
}

export interface NpmPin {
  version: string;
  integrity?: string | undefined;
}

/** What the /usr/local/bin link of a CLI leads to. */
export interface ActiveInstall {
  version: string;
  /** Its prefix when it is one of ours; null for an install elsewhere (e.g. an old `npm -g` into /usr/local). */
  prefix: string | null;
}

/** "@openai/codex" -> "@openai+codex": one folder per package under NPM_CLI_ROOT. */
export function safeName(name: string): string {
  return name.replace("/", "+");
}

/** The machine path of a version's prefix. */
export function cliPrefix(name: string, version: string): string {
  return `${NPM_CLI_ROOT}/${safeName(name)}/${version}`;
}

/** The version the /usr/local/bin/<bin> link leads to, or null when there is none. */
export async function installedVersion(
  ctx: Pick<BuildContext, "root">,
  name: string,
  bin: string,
): Promise<string | null> {
  return (await activeInstall(ctx, name, bin))?.version ?? null;
}

/** The manifest's record of a CLI: "npm:<name>" -> the active version, when one is. */
export async function globalCliInventory(
  ctx: Pick<BuildContext, "root">,
  cli: GlobalCli,
): Promise<Record<string, string>> {
  const version = await installedVersion(ctx, cli.name, cli.bins[0]!);
  return version ? { [`npm:${cli.name}`]: version } : {};
}

export async function activeInstall(
  ctx: Pick<BuildContext, "root">,
  name: string,
  bin: string,
): Promise<ActiveInstall | null> {
  const link = `${BIN_DIR}/${bin}`;
  const target = await readlinkOrNull(hostPath(ctx, link));
  if (target === null) return null;
  const resolved = path.resolve(path.dirname(link), target);
  const ours = new RegExp(
    `^${escapeRegExp(`${NPM_CLI_ROOT}/${safeName(name)}/`)}([^/]+)/bin/${escapeRegExp(bin)}$`,
  ).exec(resolved);
  if (ours) {
    const prefix = path.dirname(path.dirname(resolved));
    const version = await packageVersion(ctx, `${prefix}/lib/node_modules/${name}`, name);
    return version ? { version, prefix } : null;
  }
  // Someone else's install: the package folder is an ancestor of the bin's target.
  for (let dir = path.dirname(resolved); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const version = await packageVersion(ctx, dir, name);
    if (version) return { version, prefix: null };
  }
  return null;
}

export async function packageVersion(
  ctx: Pick<BuildContext, "root">,
  packageDir: string,
  name: string,
): Promise<string | null> {
  try {
    const manifest = JSON.parse(await fs.readFile(hostPath(ctx, `${packageDir}/package.json`), "utf8")) as {
      name?: string;
      version?: string;
    };
    return manifest.name === name && typeof manifest.version === "string" ? manifest.version : null;
  } catch {
    return null;
  }
}

async function readlinkOrNull(file: string): Promise<string | null> {
  try {
    return await fs.readlink(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // EINVAL: a file, not a link (an install the builder did not make).
    if (code === "ENOENT" || code === "EINVAL") return null;
    throw error;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
