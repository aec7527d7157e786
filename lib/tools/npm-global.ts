// Global npm CLIs (claude-code, codex, t3), each version in its own prefix
// <NPM_CLI_ROOT>/<name>/<version>/, made active by pointing /usr/local/bin
// links at that prefix's bin/. An install goes into a staging folder and
// becomes a prefix only when npm succeeded; the links switch only after
// that (and after the caller's verification), so a failed install leaves
// the old version active. The previous prefix stays for a rollback.
//
// "Is it installed?" is answered by the links and the package.json they
// lead to, never by a PATH lookup (docs/devvm.md stage 4: a personal
// ~/.local/bin/claude once shadowed the system install) and never by running
// npm (a repeated `npm install -g` reinstalls: ~9 s against 40 ms).
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import type { Change } from "../core/change.ts";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { run } from "../machine/exec.ts";
import { checkResources, lstatOrNull, replaceSymlink, type SymlinkResource } from "../machine/files.ts";
import type { Pins } from "../inputs/pins.ts";
import { BIN_DIR, NODE_IN_TREE, NPM_CLI_IN_TREE, NPM_CLI_ROOT, nodeBinary, nodeTree } from "../machine/layout.ts";
import { versionInfo } from "../sources/registry.ts";
import type { Pending } from "../core/stage.ts";
import { LEFTOVERS, removeLeftovers } from "../machine/leftovers.ts";
import { JobKind, takeOrRun, type Job } from "../core/background.ts";
import { SessionSlot } from "../core/build-session.ts";
import { formatDuration } from "../core/progress.ts";

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

export const UNDER_ROOT_REASON =
  "installing npm packages needs the pinned Node running on the machine itself, not under --root";

const STAGING = ".staging-";
const NPM_TIMEOUT_MS = 15 * 60_000;

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

/** What a CLI stage's check found, for its apply: the install active then, and the CLI's own changes. */
export interface GlobalCliPlan {
  before: ActiveInstall | null;
  changes: Change[];
}

/** The check of a CLI stage: a package change when another version (or none) is active, else the links that are wrong. */
export async function checkGlobalCli(ctx: BuildContext, cli: GlobalCli, pin: NpmPin): Promise<Pending<GlobalCliPlan>> {
  const managed = cli.bins.map((bin) => ({ path: `${BIN_DIR}/${bin}` }));
  const active = await activeInstall(ctx, cli.name, cli.bins[0]!);
  const prefix = cliPrefix(cli.name, pin.version);
  if (active?.version !== pin.version || active.prefix !== prefix) {
    const from =
      active === null
        ? null
        : active.prefix === null
          ? `${active.version} (not the builder's install)`
          : active.version;
    const changes: Change[] = [{ kind: "package", name: cli.name, from, to: pin.version }];
    return { changes, managed, plan: { before: active, changes } };
  }
  const changes = await checkResources(ctx, links(cli, prefix));
  return { changes, managed, plan: { before: active, changes } };
}

export interface InstallOptions {
  /** Runs on the new prefix (its host path) before the links switch; throwing keeps the old version active and removes the new one. */
  verify?: (hostPrefix: string) => Promise<void>;
  /**
   * Runs after verify, last thing before the links switch to another version
   * (e.g. copies of what the new version will migrate). Throwing keeps the old
   * version active; the verified prefix stays, to be verified again next time.
   */
  beforeSwitch?: () => Promise<void>;
}

/**
 * Makes the pinned version active, as its check planned: installs it when
 * its prefix is not complete, verifies it, switches the links, prunes.
 */
export async function installGlobalCli(
  ctx: BuildContext,
  cli: GlobalCli,
  pin: NpmPin,
  { before, changes }: GlobalCliPlan,
  options: InstallOptions = {},
): Promise<Change[]> {
  if (changes.length === 0) return [];
  const prefix = cliPrefix(cli.name, pin.version);
  if (before?.prefix !== prefix) {
    // A complete prefix of this version (the rollback target) is reused as it is.
    if (await needsInstall(ctx, cli, pin)) {
      const staged = await takeOrRun(installJob(ctx, cli, pin), ctx.log, () =>
        stageInstall(ctx, cli, pin, installedNodeTree(ctx)),
      );
      // Done in the background: said here, under the stage's own name.
      if (staged.done) ctx.log.info(staged.done);
      await moveIntoPlace(staged.dir, hostPath(ctx, prefix));
    }
    try {
      await options.verify?.(hostPath(ctx, prefix));
    } catch (error) {
      await fs.rm(hostPath(ctx, prefix), { recursive: true, force: true });
      throw error;
    }
    await options.beforeSwitch?.();
  }
  await fs.mkdir(hostPath(ctx, BIN_DIR), { recursive: true, mode: 0o755 });
  for (const link of links(cli, prefix)) await replaceSymlink(hostPath(ctx, link.path), link.target);
  return [...changes, ...(await pruneVersions(ctx, cli, [prefix, before?.prefix]))];
}

/** The background job that installs a CLI's version into its staging folder (or null: nothing to install). */
const NPM_INSTALL = new JobKind<Staged | null>((spec) => `npm install ${spec}`);
const installJob = (ctx: BuildContext, cli: GlobalCli, pin: NpmPin): Job<Staged | null> | undefined =>
  ctx.background?.job(NPM_INSTALL, `${cli.name}@${pin.version}`);

/** Neither active nor complete in its prefix (the rollback target is reused as it is). */
async function needsInstall(ctx: BuildContext, cli: GlobalCli, pin: NpmPin): Promise<boolean> {
  const prefix = cliPrefix(cli.name, pin.version);
  if ((await activeInstall(ctx, cli.name, cli.bins[0]!))?.prefix === prefix) return false;
  return (await packageVersion(ctx, `${prefix}/lib/node_modules/${cli.name}`, cli.name)) !== pin.version;
}

// One npm install at a time in the background: they share npm's cache, and apt has the disk.
const NPM_QUEUE = new SessionSlot(() => ({ last: Promise.resolve() as Promise<unknown> }));

/**
 * Starts installing the pinned version into its staging folder in the
 * background, when it will be needed, with the Node `withNode` gives (the
 * node stage's staged tree while it is not yet in place): the CLI's apply
 * then only moves it into place. Returns the job, when there is a background.
 */
export function prepareGlobalCli(
  ctx: BuildContext,
  cli: GlobalCli,
  pin: NpmPin,
  withNode: (work: (treeDir: string) => Promise<Staged | null>) => Promise<Staged | null>,
): Job<Staged | null> | undefined {
  const job = installJob(ctx, cli, pin);
  job?.start(
    () =>
      withNode(async (treeDir) => {
        if (!(await needsInstall(ctx, cli, pin))) return null;
        const queue = ctx.session.get(NPM_QUEUE);
        const turn = queue.last.then(() => stageInstall(ctx, cli, pin, treeDir, { background: true }));
        queue.last = turn.catch(() => {});
        return turn;
      }),
    {
      log: ctx.log,
      discard: async (staged) => void (staged && (await fs.rm(staged.dir, { recursive: true, force: true }))),
    },
  );
  return job;
}

/** Guards the pins: the registry must serve the pinned integrity for this version, or nothing is installed. */
export async function verifyIntegrity(ctx: BuildContext, name: string, pin: NpmPin): Promise<void> {
  if (!pin.integrity)
    throw new UserError(
      `pins.json has no integrity for ${name}@${pin.version}; nothing was installed`,
      "run `build.ts lock` to record it",
    );
  const served = (await versionInfo(ctx, name, pin.version)).dist?.integrity;
  if (served !== pin.integrity) {
    throw new UserError(
      `${name}@${pin.version} does not match its pin: pins.json has integrity ${pin.integrity}, the registry serves ${served ?? "none"}; nothing was installed`,
      "if the registry's package is trusted, refresh the pin with `build.ts lock`",
    );
  }
}

// ---- steps ----------------------------------------------------------------

function links(cli: GlobalCli, prefix: string): SymlinkResource[] {
  return cli.bins.map((bin) => ({ kind: "symlink", path: `${BIN_DIR}/${bin}`, target: `${prefix}/bin/${bin}` }));
}

/** An install in its staging folder (a host path), not yet the version's prefix. */
interface Staged {
  dir: string;
  /** For an install done in the background: its last progress line (`npm install x@1.0.0: done in 7.1 s`), for the stage to say. */
  done?: string;
}

/**
 * npm installs the pinned version into a staging folder (returned), running
 * the Node of the tree in `treeDir` (a host path); it becomes the
 * version's prefix only when all went well (moveIntoPlace). In the
 * background (while apt runs) npm yields the CPU to dpkg.
 */
async function stageInstall(
  ctx: BuildContext,
  cli: GlobalCli,
  pin: NpmPin,
  treeDir: string,
  { background = false } = {},
): Promise<Staged> {
  const nodeVersion = ctx.inputs.pins.node.version;
  if (!existsSync(path.join(treeDir, NODE_IN_TREE))) {
    throw new UserError(
      `the pinned Node ${nodeVersion} is not installed (${nodeBinary(nodeVersion)} is missing)`,
      `run the node stage first: build.ts --stage node,${path.basename(cli.name)}`,
    );
  }
  await verifyIntegrity(ctx, cli.name, pin);
  const prefix = hostPath(ctx, cliPrefix(cli.name, pin.version));
  const staging = path.join(path.dirname(prefix), `${STAGING}${pin.version}-${process.pid}`);
  await removeLeftovers(ctx, path.dirname(prefix), LEFTOVERS.npmStaging);
  await fs.rm(staging, { recursive: true, force: true });
  // Every user runs these CLIs: each level 0755 whatever the umask. npm
  // 11.19.1 with --strict-allow-scripts fails with ENOENT on a prefix without lib/.
  for (const dir of [hostPath(ctx, NPM_CLI_ROOT), path.dirname(prefix), staging, path.join(staging, "lib")]) {
    await fs.mkdir(dir, { recursive: true });
    await fs.chmod(dir, 0o755);
  }
  const label = `npm install ${cli.name}@${pin.version}`;
  const started = Date.now();
  try {
    const registry = ctx.settings.npmRegistry ? ["--registry", ctx.settings.npmRegistry] : [];
    const allowed = cli.allowScripts?.length ? [`--allow-scripts=${cli.allowScripts.join(",")}`] : [];
    await run(
      ctx,
      path.join(treeDir, NODE_IN_TREE),
      [
        path.join(treeDir, NPM_CLI_IN_TREE),
        ...["install", "--global", "--prefix", staging, `${cli.name}@${pin.version}`, ...registry, ...allowed],
        // Only the scripts allowed by name run; any other fails the install
        // rather than running with a notice (npm's default), whatever npmrc says.
        ...["--strict-allow-scripts", "--ignore-scripts=false", "--no-audit", "--no-fund"],
      ],
      // npm says nothing for minutes (claude-code's install script): its elapsed time shows it runs.
      {
        env: nodeEnv(treeDir),
        timeoutMs: NPM_TIMEOUT_MS,
        heartbeat: { label, quietDone: background },
        signal: ctx.background?.signal,
        yieldCpu: background,
      },
    );
    await assertInstalled(cli, pin.version, staging);
    return {
      dir: staging,
      ...(background ? { done: `${label}: done in ${formatDuration(Date.now() - started)}` } : {}),
    };
  } catch (error) {
    await fs.rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** The staged install becomes the version's prefix, in one rename. */
async function moveIntoPlace(staging: string, hostPrefix: string): Promise<void> {
  try {
    await fs.rm(hostPrefix, { recursive: true, force: true });
    await fs.rename(staging, hostPrefix);
  } catch (error) {
    await fs.rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** The staged package is the pinned version and has exactly the commands the stage links. */
async function assertInstalled(cli: GlobalCli, version: string, hostStaging: string): Promise<void> {
  const manifest = JSON.parse(
    await fs.readFile(path.join(hostStaging, "lib/node_modules", cli.name, "package.json"), "utf8"),
  ) as { version?: string; bin?: string | Record<string, string> };
  if (manifest.version !== version)
    throw new UserError(`npm installed ${cli.name}@${manifest.version} instead of ${version}`);
  const bins = typeof manifest.bin === "string" ? [path.basename(cli.name)] : Object.keys(manifest.bin ?? {});
  if (bins.sort().join(",") !== [...cli.bins].sort().join(",")) {
    throw new UserError(
      `${cli.name}@${version} provides the commands [${bins.join(", ")}], the stage links [${cli.bins.join(", ")}]; nothing was switched`,
      "update the stage's bins to the package's",
    );
  }
  for (const bin of cli.bins)
    if (!(await lstatOrNull(path.join(hostStaging, "bin", bin))))
      throw new UserError(`npm left no bin/${bin} in the new ${cli.name}@${version} install`);
}

/** Keeps the active and the previous version; removes older ones and leftovers of killed installs. */
async function pruneVersions(
  ctx: BuildContext,
  cli: GlobalCli,
  keep: Array<string | null | undefined>,
): Promise<Change[]> {
  const dir = `${NPM_CLI_ROOT}/${safeName(cli.name)}`;
  const kept = new Set(keep.filter((p): p is string => !!p).map((p) => path.basename(p)));
  const names = await fs.readdir(hostPath(ctx, dir)).catch(() => [] as string[]);
  const changes: Change[] = [];
  for (const name of names) {
    if (kept.has(name)) continue;
    await fs.rm(hostPath(ctx, `${dir}/${name}`), { recursive: true, force: true });
    if (!name.startsWith(STAGING))
      changes.push({ kind: "action", description: `remove ${cli.name} ${name} (older than the previous version)` });
  }
  return changes;
}

/** The environment for the installed CLIs: the pinned Node first on PATH (their `#!/usr/bin/env node`). */
export function pinnedNodeEnv(ctx: BuildContext): Record<string, string> {
  return nodeEnv(installedNodeTree(ctx));
}

/** The pinned Node's tree as the node stage installed it (its host path). */
function installedNodeTree(ctx: BuildContext): string {
  return hostPath(ctx, nodeTree(ctx.inputs.pins.node.version));
}

/** npm and what it runs (install scripts) find the Node of this tree first on PATH. */
function nodeEnv(treeDir: string): Record<string, string> {
  return { PATH: `${path.join(treeDir, path.dirname(NODE_IN_TREE))}:${process.env.PATH ?? "/usr/bin:/bin"}` };
}

// ---- helpers ----------------------------------------------------------------

async function packageVersion(
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
