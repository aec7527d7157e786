// The builder as one file (esbuild), for builder-install to put on the box.
// Making it takes 1-2 s, so what the installed bundle was made from is
// recorded under STATE_DIR: while those sources are unchanged and the
// installed bundle is the one recorded, a build skips esbuild altogether.
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SessionSlot, type BuildSession } from "../core/build-session.ts";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import { writeFileAtomic } from "../machine/files.ts";
import { STATE_DIR } from "../machine/layout.ts";

export interface Bundle {
  content: Buffer;
  /** What it was made from, relative to the repository; empty when copied from a running bundle. */
  sources: string[];
}

interface BundleRecord {
  bundleSha256: string;
  sourcesSha256: string;
  sources: string[];
}

export const BUNDLE_RECORD = `${STATE_DIR}/builder-bundle.json`;
const SELF = fileURLToPath(import.meta.url);
// A variable, so that esbuild leaves this import out of the bundle it makes.
const ESBUILD = "esbuild";
const MADE = new SessionSlot(() => new Map<string, Promise<Bundle>>());

/** The bundle: this very file when the builder runs bundled, else made from the sources (once a build). */
export function builderBundle(session: BuildSession, repoDir: string): Promise<Bundle> {
  const made = session.get(MADE);
  let bundle = made.get(repoDir);
  if (!bundle) made.set(repoDir, (bundle = makeBundle(repoDir)));
  return bundle;
}

async function makeBundle(repoDir: string): Promise<Bundle> {
  if (SELF.endsWith(".mjs")) return { content: await fs.readFile(SELF), sources: [] };
  const esbuild = (await import(ESBUILD)) as typeof import("esbuild");
  // The options of `npm run bundle`. The banner gives bundled CommonJS code a
  // require; its import is aliased, as zx imports createRequire itself.
  const result = await esbuild.build({
    entryPoints: [path.join(repoDir, "build.ts")],
    absWorkingDir: repoDir,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    write: false,
    metafile: true,
    outfile: path.join(repoDir, "dist/devvm.mjs"),
    logLevel: "warning",
    banner: {
      js: "import { createRequire as devvmCreateRequire } from 'node:module'; const require = devvmCreateRequire(import.meta.url);",
    },
  });
  // esbuild's own version decides the output too.
  const sources = [...Object.keys(result.metafile.inputs), "node_modules/esbuild/package.json"].sort();
  return { content: Buffer.from(result.outputFiles[0]!.contents), sources };
}

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

async function sourcesSha256(repoDir: string, sources: string[]): Promise<string | undefined> {
  const hash = createHash("sha256");
  for (const source of sources) {
    const content = await fs.readFile(path.join(repoDir, source)).catch(() => undefined);
    if (!content) return undefined;
    hash.update(`${source}\0${sha256(content)}\n`);
  }
  return hash.digest("hex");
}

/** True when the installed bundle is the one recorded and its sources have not changed since. */
export async function installedBundleIsCurrent(ctx: BuildContext, installed: string): Promise<boolean> {
  if (SELF.endsWith(".mjs")) return false;
  const record = await fs
    .readFile(hostPath(ctx, BUNDLE_RECORD), "utf8")
    .then((text) => JSON.parse(text) as BundleRecord)
    .catch(() => undefined);
  if (!record || !Array.isArray(record.sources)) return false;
  const have = await fs.readFile(hostPath(ctx, installed)).catch(() => undefined);
  if (!have || sha256(have) !== record.bundleSha256) return false;
  return (await sourcesSha256(ctx.repoDir, record.sources)) === record.sourcesSha256;
}

/** Records what the installed bundle was made from: a cache, not part of the machine's configuration. */
export async function recordBundle(ctx: BuildContext, bundle: Bundle): Promise<void> {
  const file = hostPath(ctx, BUNDLE_RECORD);
  const sourcesHash = bundle.sources.length > 0 ? await sourcesSha256(ctx.repoDir, bundle.sources) : undefined;
  if (!sourcesHash) return fs.rm(file, { force: true });
  const record: BundleRecord = {
    bundleSha256: sha256(bundle.content),
    sourcesSha256: sourcesHash,
    sources: bundle.sources,
  };
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, `${JSON.stringify(record)}\n`, { mode: 0o644, uid: 0, gid: 0 });
}
