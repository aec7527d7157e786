import path from "node:path";
import type { Accounts } from "../machine/accounts.ts";
import type { Background } from "./background.ts";
import type { BuildSession } from "./build-session.ts";
import type { Inputs } from "../inputs/index.ts";
import type { Settings } from "../inputs/settings.ts";
import type { Release } from "../machine/releases.ts";

/** Lines a stage may print; the runner indents them under the stage's line. */
export interface Logger {
  info(message: string): void;
  debug(message: string): void;
}

/** Everything a stage may use. Stages read inputs from here, never from disk. */
export interface BuildContext {
  /** "/" on a real machine; the folder given with --root otherwise. */
  readonly root: string;
  readonly inputs: Inputs;
  readonly settings: Settings;
  /** The managed machine's release (lib/machine/releases.ts), read from its os-release when the build starts. */
  readonly release: Release;
  /** True under --plan: checks only, nothing is changed. */
  readonly planOnly: boolean;
  /** --for-image: the build makes an image's root; stages marked firstBoot are skipped. */
  readonly forImage?: boolean;
  /** --strict: what is otherwise a warning (e.g. Vault unreachable) fails the stage. */
  readonly strict: boolean;
  /** --t3-back-to: the version the admin named as the way back below the newest t3 that ran (stage t3). */
  readonly t3BackTo?: string;
  /** Where the project's own files (files/, stages/) live. */
  readonly repoDir: string;
  /** Where roster.yaml, packages.txt and pins.json were read from (--inputs). */
  readonly inputsDir: string;
  readonly log: Logger;
  /** Content-addressed download cache (output/cache unless DEVVM_CACHE_DIR). */
  readonly cacheDir: string;
  /** User and group names of the managed machine. */
  readonly accounts: Accounts;
  /** What this build remembers while it runs (caches, work in flight): made by the command that runs it. */
  readonly session: BuildSession;
  /** Run when the build ends, whatever its outcome (e.g. releasing the lock). */
  readonly cleanups: Array<() => void | Promise<void>>;
  /** What stages prepare while earlier ones run (the runner's, for a build); without it, all work is done in apply. */
  readonly background?: Background;
  /** The running stage's warnings, for its line in the report (the runner's, one list per stage). */
  readonly warnings?: string[];
}

/** A warning: printed under the stage, and kept for its line in the report (once each). */
export function warn(ctx: Pick<BuildContext, "log" | "warnings">, message: string): void {
  if (ctx.warnings?.includes(message)) return;
  ctx.warnings?.push(message);
  ctx.log.info(`warning: ${message}`);
}

/** The real location of a machine path, under --root when one is given. */
export function hostPath(ctx: Pick<BuildContext, "root">, machinePath: string): string {
  return ctx.root === "/" ? machinePath : path.join(ctx.root, machinePath);
}

/** True when paths are managed under a --root folder rather than on the machine itself. */
export function underRoot(ctx: Pick<BuildContext, "root">): boolean {
  return ctx.root !== "/";
}
