// Global npm CLIs (claude-code, codex, t3), each version in its own prefix
// <NPM_CLI_ROOT>/<name>/<version>/, made active by pointing /usr/local/bin
// links at that prefix's bin/. An install goes into a staging folder and
// becomes a prefix only when npm succeeded; the links switch only after
// that (and after the caller's verification), so a failed install leaves
// the old version active. The previous prefix stays for a rollback.
// Which version is active: npm-active.ts; the install into its staging
// folder: npm-staged-install.ts.
import { promises as fs } from "node:fs";
import path from "node:path";
import { JobKind, takeOrRun, type Job } from "../core/background.ts";
import { SessionSlot } from "../core/build-session.ts";
import type { Change } from "../core/change.ts";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import type { Pending } from "../core/stage.ts";
import { checkResources, replaceSymlink, type SymlinkResource } from "../machine/files.ts";
import { BIN_DIR, NPM_CLI_ROOT } from "../machine/layout.ts";
import {
  activeInstall,
  cliPrefix,
  packageVersion,
  safeName,
  type ActiveInstall,
  type GlobalCli,
  type NpmPin,
} from "./npm-active.ts";
import { installedNodeTree, moveIntoPlace, stageInstall, STAGING, type Staged } from "./npm-staged-install.ts";

export {
  activeInstall,
  cliPrefix,
  globalCliInventory,
  installedVersion,
  safeName,
  type ActiveInstall,
  type GlobalCli,
  type NpmPin,
} from "./npm-active.ts";
export { pinnedNodeEnv, verifyIntegrity } from "./npm-staged-install.ts";

export const UNDER_ROOT_REASON =
  "installing npm packages needs the pinned Node running on the machine itself, not under --root";

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
  /**
   * Runs first, before verify, only when the version changes (e.g. copies of
   * what the new version will migrate, one of which verify runs on). Throwing
   * keeps the old version active; the new prefix stays, to be tried next time.
   */
  beforeVerify?: () => Promise<void>;
  /** Runs on the new prefix (its host path) before the links switch; throwing keeps the old version active and removes the new one. */
  verify?: (hostPrefix: string) => Promise<void>;
  /**
   * Runs after verify, last thing before the links switch to another version
   * (e.g. copies of what the new version will migrate). Throwing keeps the old
   * version active; the verified prefix stays, to be verified again next time.
   */
  beforeSwitch?: () => Promise<void>;
  /** Versions whose prefixes the prune keeps besides the active and the previous one (t3's last-good). */
  keepVersions?: Array<string | null>;
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
    await options.beforeVerify?.();
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
  const kept = (options.keepVersions ?? []).map((v) => (v ? cliPrefix(cli.name, v) : null));
  return [...changes, ...(await pruneVersions(ctx, cli, [prefix, before?.prefix, ...kept]))];
}

/**
 * Points the CLI's links at `version`'s prefix (a rollback), when that
 * prefix holds exactly that version; false otherwise, and nothing changes.
 */
export async function relinkVersion(ctx: BuildContext, cli: GlobalCli, version: string): Promise<boolean> {
  const prefix = cliPrefix(cli.name, version);
  if ((await packageVersion(ctx, `${prefix}/lib/node_modules/${cli.name}`, cli.name)) !== version) return false;
  for (const link of links(cli, prefix)) await replaceSymlink(hostPath(ctx, link.path), link.target);
  return true;
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

function links(cli: GlobalCli, prefix: string): SymlinkResource[] {
  return cli.bins.map((bin) => ({ kind: "symlink", path: `${BIN_DIR}/${bin}`, target: `${prefix}/bin/${bin}` }));
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
