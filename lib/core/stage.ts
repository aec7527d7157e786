import type { Change } from "./change.ts";
import type { BuildContext } from "./context.ts";
import type { Managed } from "../machine/files.ts";
import type { Settings } from "../inputs/settings.ts";

/**
 * What a stage's check found: the changes to make, the paths it manages and
 * its plan (`P`, what apply needs to make the changes: what it read from
 * Vault, the steps it planned). The runner hands exactly this to the same
 * stage's apply. A stage without a plan of its own leaves `plan` out.
 */
export type Pending<P = unknown> = { changes: Change[]; managed: Managed[] } & (undefined extends P
  ? { plan?: P }
  : { plan: P });

/**
 * A value the stage needs from pins.json that pins.json may lack until
 * `build.ts lock` records it (a hash), by its key path: "kubectl.sha256";
 * with a note when the key does not say why it is needed.
 */
export type PinNeed = string | { key: string; note: string };

/** A stage may decide it does not apply here, and say why. */
export type Check<P = unknown> = Pending<P> | { skip: string };

/**
 * A stage whose check plans `P` for its apply. `Stage` alone is any stage
 * (the runner's list): a stage object declared `satisfies Stage<Plan>` fits
 * it, as a method's parameter is checked both ways.
 */
export interface Stage<P = unknown> {
  /** The file's name: stages/skel.ts is "skel". */
  name: string;
  /** One line, printed by --list. */
  description: string;
  /** Runs whatever stages are selected (preflight). */
  always?: boolean;
  /**
   * Why the stage needs the booted machine (its users, Vault, systemd
   * running): an image build (`build.ts image`) leaves it to the image's
   * first boot, where the installed builder runs it.
   */
  firstBoot?: string;
  /**
   * What it needs from pins.json (lib/inputs/required-pins.ts checks it for
   * the selected stages before any runs); a function when that depends on
   * the settings or on --root (a stage that skips itself there needs nothing).
   */
  pins?: readonly PinNeed[] | ((where: { settings: Settings; underRoot: boolean }) => readonly PinNeed[]);
  check(ctx: BuildContext): Promise<Check<P>>;
  /** Makes the changes check found, with its plan (the runner passes check's result); returns what it changed. */
  apply(ctx: BuildContext, pending: Pending<P>): Promise<Change[]>;
  /** Versions of what the stage installs ("apt:git" -> "1:2.39.5-0+deb12u2"), for the manifest. */
  inventory?(ctx: BuildContext): Promise<Record<string, string>>;
  /**
   * Starts the stage's slow work at the build's start, so it overlaps with
   * earlier stages (apt's work): downloads into the cache, installs into a
   * staging folder (ctx.background, lib/core/background.ts). It changes nothing
   * live: apply takes the work over and makes it live; errors surface there.
   * It only starts jobs, at once (it returns nothing, so it cannot await): every
   * job has started when the runner seals the build's background after the
   * preparations, whatever their order.
   * Its lines are labelled with the stage's name (`[node] ...`) while another stage runs.
   */
  prepare?(ctx: BuildContext): undefined;
}

export type Outcome = "changed" | "unchanged" | "pending" | "skipped" | "failed" | "not-run";

export interface FailureDetail {
  message: string;
  hint?: string;
  stack?: string;
}

/** One stage's line in the report; `warnings` when it had any (what it left alone, and why). */
export type StageResult =
  | { name: string; outcome: "changed" | "pending"; durationMs: number; changes: Change[]; warnings?: string[] }
  | { name: string; outcome: "unchanged"; durationMs: number; warnings?: string[] }
  | { name: string; outcome: "skipped"; durationMs: number; reason: string; warnings?: string[] }
  | {
      name: string;
      outcome: "failed";
      durationMs: number;
      error: FailureDetail;
      changes: Change[];
      warnings?: string[];
    }
  | { name: string; outcome: "not-run" };

export function isSkip<P>(check: Check<P>): check is { skip: string } {
  return "skip" in check;
}
