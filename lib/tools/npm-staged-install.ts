// An npm install of a pinned CLI version into a staging folder beside its
// prefix, with the pinned Node: it becomes the version's prefix (one rename)
// only when npm succeeded and the package is the pinned one with the
// commands the stage links.
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { formatDuration } from "../core/progress.ts";
import { run } from "../machine/exec.ts";
import { lstatOrNull } from "../machine/files.ts";
import { NODE_IN_TREE, NPM_CLI_IN_TREE, NPM_CLI_ROOT, nodeBinary, nodeTree } from "../machine/layout.ts";
import { LEFTOVERS, removeLeftovers } from "../machine/leftovers.ts";
import { versionInfo } from "../sources/registry.ts";
import { cliPrefix, type GlobalCli, type NpmPin } from "./npm-active.ts";

/** The name of a staging folder starts so: `.staging-<version>-<pid>`. */
export const STAGING = ".staging-";

const NPM_TIMEOUT_MS = 15 * 60_000;

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

/** An install in its staging folder (a host path), not yet the version's prefix. */
export interface Staged {
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
export async function stageInstall(
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
export async function moveIntoPlace(staging: string, hostPrefix: string): Promise<void> {
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

/** The environment for the installed CLIs: the pinned Node first on PATH (their `#!/usr/bin/env node`). */
export function pinnedNodeEnv(ctx: BuildContext): Record<string, string> {
  return nodeEnv(installedNodeTree(ctx));
}

/** The pinned Node's tree as the node stage installed it (its host path). */
export function installedNodeTree(ctx: BuildContext): string {
  return hostPath(ctx, nodeTree(ctx.inputs.pins.node.version));
}

/** npm and what it runs (install scripts) find the Node of this tree first on PATH. */
function nodeEnv(treeDir: string): Record<string, string> {
  return { PATH: `${path.join(treeDir, path.dirname(NODE_IN_TREE))}:${process.env.PATH ?? "/usr/bin:/bin"}` };
}
