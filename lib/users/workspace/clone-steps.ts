// The steps of a non-admin's workspace that clones.ts plans, and how each
// is done: as the user for git, through lib/machine/safe-path.ts for what
// root moves, makes or removes in the home. A network failure is a warning
// and changes nothing; a link the user planted throws UnsafePathError.
import path from "node:path";
import type { Change } from "../../core/change.ts";
import { warn, type BuildContext } from "../../core/context.ts";
import { UserError } from "../../core/errors.ts";
import { ensureFolder, inspect, moveEntry, removeTree } from "../../machine/safe-path.ts";
import { CLONE_TIMEOUT_MS, gitAs, tryGitAs, type Person } from "./git.ts";

export type WorkspaceStep =
  | { kind: "finish-move"; who: Person; code: string }
  | { kind: "move"; who: Person; code: string }
  | { kind: "create-code"; who: Person; code: string }
  | { kind: "hoist"; who: Person; from: string; to: string }
  | { kind: "clone-infra"; who: Person; target: string; origin: string; forgejo?: string }
  | { kind: "wire-forgejo"; who: Person; repo: string; forgejo: string; addRemote: boolean }
  | { kind: "fast-forward"; who: Person; repo: string; upstream: string; commits: number }
  | { kind: "clone-repo"; who: Person; name: string; target: string; url: string };

/** Where a killed move left the clone; the next run finishes the move. */
export const movingAside = (code: string) => `${code}.devvm-migrating`;
const cloningAside = (target: string) => `${target}.devvm-cloning`;

export function describeStep(step: WorkspaceStep): Change {
  return { kind: "action", description: describe(step) };
}

function describe(step: WorkspaceStep): string {
  switch (step.kind) {
    case "finish-move":
      return `finish moving ${step.code} to ${step.code}/infra (a build stopped half way)`;
    case "move":
      return `move ${step.code} to ${step.code}/infra (code_layout workspace)`;
    case "create-code":
      return `create ${step.code} for ${step.who.name}`;
    case "hoist":
      return `move ${step.from} to ${step.to} (a roster repo that infra does not track)`;
    case "clone-infra":
      return `clone the infra repository, locked, into ${step.target} as ${step.who.name}`;
    case "wire-forgejo":
      return `${step.addRemote ? "add the forgejo remote and " : ""}set master's upstream to forgejo/master in ${step.repo}`;
    case "fast-forward":
      return `fast-forward master of ${step.repo} to ${step.upstream} (${step.commits} commit${step.commits === 1 ? "" : "s"})`;
    case "clone-repo":
      return `clone ${step.name} into ${step.target} as ${step.who.name}`;
  }
}

/** Applies one step; a network failure is a warning and returns no change; a planted link throws UnsafePathError. */
export async function applyStep(ctx: BuildContext, step: WorkspaceStep): Promise<Change[]> {
  switch (step.kind) {
    case "finish-move":
    case "move":
      moveToInfra(ctx, step.code, step.kind === "finish-move");
      break;
    case "create-code":
      ensureFolder(ctx, step.code, step.who, 0o700);
      break;
    case "hoist":
      moveEntry(ctx, step.from, step.to);
      break;
    case "clone-infra": {
      const aside = cloningAside(step.target);
      removeTree(ctx, aside);
      const failed = await tryGitAs(
        ctx,
        step.who,
        ["clone", "--quiet", "--no-checkout", "--origin", "origin", step.origin, aside],
        { timeoutMs: CLONE_TIMEOUT_MS },
      );
      if (failed) {
        removeTree(ctx, aside);
        warn(ctx, `could not clone infra into ${step.target} for ${step.who.name}: ${failed}; retried next run`);
        return [];
      }
      // Locked: git-crypt's filters are cat before anything is checked out, so no key is asked for and secrets stay ciphertext.
      for (const [key, value] of [
        ["filter.git-crypt.smudge", "cat"],
        ["filter.git-crypt.clean", "cat"],
        ["filter.git-crypt.required", "false"],
      ]) {
        await gitAs(ctx, step.who, ["-C", aside, "config", key!, value!]);
      }
      await gitAs(ctx, step.who, ["-C", aside, "checkout", "--quiet", "master"]);
      moveEntry(ctx, aside, step.target);
      const changes = [describeStep(step)];
      if (step.forgejo)
        changes.push(
          ...(await applyStep(ctx, {
            kind: "wire-forgejo",
            who: step.who,
            repo: step.target,
            forgejo: step.forgejo,
            addRemote: true,
          })),
        );
      return changes;
    }
    case "wire-forgejo": {
      // Fetched before anything is configured: a failed fetch changes nothing.
      const failed = await tryGitAs(ctx, step.who, [
        "-C",
        step.repo,
        "fetch",
        "--quiet",
        "--no-tags",
        step.forgejo,
        "+refs/heads/master:refs/remotes/forgejo/master",
      ]);
      if (failed) {
        warn(
          ctx,
          `could not fetch forgejo/master into ${step.repo} for ${step.who.name}: ${failed}; upstream left as it was`,
        );
        return [];
      }
      if (step.addRemote) await gitAs(ctx, step.who, ["-C", step.repo, "remote", "add", "forgejo", step.forgejo]);
      await gitAs(ctx, step.who, ["-C", step.repo, "branch", "--quiet", "--set-upstream-to=forgejo/master", "master"]);
      break;
    }
    case "fast-forward": {
      // The upstream as planned (wiring in this run may have changed master@{upstream}).
      const failed = await tryGitAs(ctx, step.who, ["-C", step.repo, "merge", "--quiet", "--ff-only", step.upstream]);
      if (failed) {
        warn(ctx, `could not fast-forward ${step.repo}: ${failed}; left as it was`);
        return [];
      }
      break;
    }
    case "clone-repo": {
      const aside = cloningAside(step.target);
      removeTree(ctx, aside);
      const failed = await tryGitAs(ctx, step.who, ["clone", "--quiet", step.url, aside], {
        timeoutMs: CLONE_TIMEOUT_MS,
      });
      if (failed) {
        removeTree(ctx, aside);
        warn(ctx, `could not clone ${step.name} for ${step.who.name}: ${failed}; retried next run`);
        return [];
      }
      moveEntry(ctx, aside, step.target);
      break;
    }
  }
  return [describeStep(step)];
}

/**
 * ~/code becomes ~/code/infra by renames only, never a copy: ~/code goes
 * aside, a new ~/code (same owner and mode) is made, the clone goes into it.
 * Killed at any point, the aside name tells the next run to finish.
 */
function moveToInfra(ctx: BuildContext, code: string, resuming: boolean): void {
  const aside = movingAside(code);
  if (!resuming) moveEntry(ctx, code, aside);
  const stats = inspect(ctx, aside);
  if (!stats?.isDirectory())
    throw new UserError(
      `${aside} is not a folder`,
      `move it away by hand; the next run moves ${code} to ${code}/infra again`,
    );
  ensureFolder(ctx, code, { uid: stats.uid, gid: stats.gid }, stats.mode & 0o7777);
  moveEntry(ctx, aside, path.join(code, "infra"));
}
