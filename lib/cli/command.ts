// What a command of build.ts is, and what each one is handed: the inputs
// and settings, read once, after the check for root.
import path from "node:path";
import { BuildSession } from "../core/build-session.ts";
import type { Logger } from "../core/context.ts";
import { loadInputs, type Inputs } from "../inputs/index.ts";
import { readSettings, type Settings } from "../inputs/settings.ts";
import { requireRoot } from "../../stages/preflight.ts";
import type { CliOptions } from "./args.ts";
import type { CommandOutcome } from "./exit-code.ts";
import { say } from "./terminal.ts";

export interface Command {
  /** loadInputs's mode: lock alone may find packages.txt and pins.json apart (it joins them). */
  forLock?: boolean;
  /** Returns how it ended; throws what build.ts turns into an error line and exit code. */
  run(c: CommandContext): Promise<CommandOutcome>;
}

export interface CommandContext {
  cli: CliOptions;
  /** The builder's own folder. */
  repoDir: string;
  /** Where roster.yaml, packages.txt and pins.json are read from (--inputs). */
  inputsDir: string;
  /** "/", or the folder given with --root. */
  root: string;
  /** Where report.json, manifest.json, the cache and the image go (--output). */
  outputDir: string;
  /** Content-addressed download cache (output/cache unless DEVVM_CACHE_DIR). */
  cacheDir: string;
  settings: Settings;
  inputs: Inputs;
  log: Logger;
  /** The state of this one run (caches, queues): one per command, never shared by two builds. */
  session: BuildSession;
}

export async function openCommand(command: Command, cli: CliOptions, repoDir: string): Promise<CommandContext> {
  // Every command needs root (lock runs apt-get update): said before anything is read or written.
  requireRoot(process.getuid?.());
  const settings = readSettings();
  // A Secret in the settings from here on: no child of the build inherits it.
  delete process.env.VAULT_TOKEN;
  const inputsDir = path.resolve(cli.inputs ?? repoDir);
  const root = path.resolve(cli.root ?? "/");
  // The root's system accounts may not be roster users.
  const inputs = await loadInputs(inputsDir, { root, forLock: command.forLock ?? false });
  const outputDir = path.resolve(cli.output ?? path.join(repoDir, "output"));
  return {
    cli,
    repoDir,
    inputsDir,
    root,
    outputDir,
    cacheDir: settings.cacheDir ?? path.join(outputDir, "cache"),
    settings,
    inputs,
    log: { info: (m) => say(`      ${m}`), debug: (m) => void (cli.debug && say(`      ${m}`)) },
    session: new BuildSession(),
  };
}
