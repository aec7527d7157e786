import { existsSync, promises as fs, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import {
  applyResources,
  checkAttributes,
  checkResources,
  fixAttributes,
  managedBy,
  writeFileAtomic,
  type Resource,
} from "../lib/machine/files.ts";
import { builderBundle, installedBundleIsCurrent, recordBundle } from "../lib/release/builder-bundle.ts";
import { BUILDER_DIR } from "../lib/machine/layout.ts";
import { builderIdentity } from "../lib/output/report.ts";
import { settingsEnvironment } from "../lib/inputs/settings.ts";
import type { Stage } from "../lib/core/stage.ts";

// The timers run the builder itself for one stage (docs/devvm.md: the pin lives in
// one place), so the builder is installed on the box: the esbuild bundle
// (a no-op run starts in ~0.3 s, 5x faster than tsx on the sources) with the
// files/ it installs from and the inputs, run by the pinned /usr/local/bin/node.
// The inputs this build used (--inputs), so the timers enforce the same pins.
const INPUTS = ["roster.yaml", "packages.txt", "pins.json"];
const BUNDLE = "dist/devvm.mjs";
function filesUnder(dir: string, relative = ""): string[] {
  return readdirSync(path.join(dir, relative), { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((entry) => {
      const child = path.join(relative, entry.name);
      return entry.isDirectory() ? [`${child}/`, ...filesUnder(dir, child)] : [child];
    });
}

async function resources(ctx: BuildContext): Promise<Resource[]> {
  const at = (relative: string) => path.join(BUILDER_DIR, relative);
  const tree = filesUnder(path.join(ctx.repoDir, "files")).map((relative): Resource => {
    if (relative.endsWith("/")) return { kind: "dir", path: at(`files/${relative.slice(0, -1)}`), mode: 0o755 };
    return {
      kind: "file",
      path: at(`files/${relative}`),
      mode: 0o644,
      content: readFileBuffer(ctx, `files/${relative}`),
    };
  });
  return [
    { kind: "dir", path: path.dirname(BUILDER_DIR), mode: 0o755 },
    { kind: "dir", path: BUILDER_DIR, mode: 0o755 },
    { kind: "dir", path: at("dist"), mode: 0o755 },
    ...INPUTS.map((name): Resource => ({
      kind: "file",
      path: at(name),
      mode: 0o644,
      content: readFileSync(path.join(ctx.inputsDir, name)),
    })),
    { kind: "file", path: at("package.json"), mode: 0o644, content: readFileBuffer(ctx, "package.json") },
    // The timers' units read it (EnvironmentFile=): their runs use the same sources and CAs.
    { kind: "file", path: at("settings.env"), mode: 0o644, content: settingsEnv(ctx) },
    // The report of a timer's run names the commit it was built from.
    { kind: "file", path: at("BUILDER_COMMIT"), mode: 0o644, content: `${builderIdentity(ctx.repoDir).commit}\n` },
    { kind: "dir", path: at("files"), mode: 0o755 },
    ...tree,
  ];
}

/** The settings this build ran with, as environment lines; never the Vault token. */
function settingsEnv(ctx: BuildContext): string {
  const lines = Object.entries(settingsEnvironment(ctx.settings)).map(
    ([variable, text]) => `${variable}="${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`,
  );
  return `# Written by the devvm builder (builder-install): the settings of the build that installed it.\n${lines.sort().join("\n")}\n`;
}

function readFileBuffer(ctx: BuildContext, relative: string): Buffer {
  return readFileSync(path.join(ctx.repoDir, relative));
}

// The bundle is not a file resource: its diff would put a megabyte of code
// into the report. Its change says only how big it is.
const BUNDLE_PATH = path.join(BUILDER_DIR, BUNDLE);

async function checkBundle(ctx: BuildContext): Promise<Change[]> {
  if (await installedBundleIsCurrent(ctx, BUNDLE_PATH)) return checkAttributes(ctx, BUNDLE_PATH, 0o644);
  const want = await builderBundle(ctx.session, ctx.repoDir);
  const have = await fs.readFile(hostPath(ctx, BUNDLE_PATH)).catch(() => null);
  if (!have)
    return [
      {
        kind: "create",
        path: BUNDLE_PATH,
        what: "file",
        diff: `${BUNDLE_PATH}: the builder bundle, ${want.content.length} bytes`,
      },
    ];
  if (!have.equals(want.content))
    return [
      { kind: "content", path: BUNDLE_PATH, diff: `${BUNDLE_PATH}: ${have.length} -> ${want.content.length} bytes` },
      ...(await checkAttributes(ctx, BUNDLE_PATH, 0o644)),
    ];
  // The same bundle from changed sources (a comment): the record lets the next build skip esbuild.
  if (!ctx.planOnly) await recordBundle(ctx, want);
  return checkAttributes(ctx, BUNDLE_PATH, 0o644);
}

/** Makes the bundle's changes that checkBundle found. */
async function applyBundle(ctx: BuildContext, changes: Change[]): Promise<Change[]> {
  if (changes.some((c) => c.kind === "create" || c.kind === "content")) {
    const bundle = await builderBundle(ctx.session, ctx.repoDir);
    await writeFileAtomic(hostPath(ctx, BUNDLE_PATH), bundle.content, { mode: 0o644, uid: 0, gid: 0 });
    await recordBundle(ctx, bundle);
  } else if (changes.length > 0) await fixAttributes(ctx, BUNDLE_PATH, 0o644);
  return changes;
}

/** Files of an earlier version that this one no longer has. */
function leftovers(ctx: BuildContext, wanted: Resource[]): string[] {
  const installed = hostPath(ctx, path.join(BUILDER_DIR, "files"));
  if (!existsSync(installed)) return [];
  const keep = new Set(wanted.map((r) => r.path));
  return filesUnder(installed)
    .map((relative) => path.join(BUILDER_DIR, "files", relative.replace(/\/$/, "")))
    .filter((p) => !keep.has(p));
}

export default {
  name: "builder-install",
  description: `Installs the builder (bundle, files/, inputs) at ${BUILDER_DIR} for the timers, run by /usr/local/bin/node`,
  async check(ctx) {
    const wanted = await resources(ctx);
    const removed = leftovers(ctx, wanted);
    const removals = removed.map((p): Change => ({ kind: "action", description: `remove ${p}` }));
    const bundle = await checkBundle(ctx);
    const changes: Change[] = [...(await checkResources(ctx, wanted)), ...bundle, ...removals];
    return { changes, managed: [...managedBy(wanted), { path: BUNDLE_PATH }], plan: { wanted, removed, bundle } };
  },
  async apply(ctx, { plan: { wanted, removed, bundle } }) {
    // Deepest first, so a folder is empty when its turn comes.
    for (const p of [...removed].reverse()) await fs.rm(hostPath(ctx, p), { recursive: true, force: true });
    const changes = [...(await applyResources(ctx, wanted)), ...(await applyBundle(ctx, bundle))];
    return [...removed.map((p): Change => ({ kind: "action", description: `remove ${p}` })), ...changes];
  },
} satisfies Stage<{ wanted: Resource[]; removed: string[]; bundle: Change[] }>;
