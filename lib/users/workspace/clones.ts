// Each non-admin's code (docs/devvm.md "Per-user", Code), planned as data from
// what is on disk and in git, then applied step by step as the user:
// - layout: a single-layout ~/code moved whole to ~/code/infra by renames
//   (a killed move is finished by the next run), an absent ~/code made,
//   roster repos nested untracked in infra hoisted to ~/code/REPO;
// - the locked infra clone (git-crypt filters set to cat before checkout,
//   so secrets stay ciphertext), only where there is none;
// - the forgejo remote and master's upstream forgejo/master;
// - each run, a fetch of all remotes and a fast-forward of master only
//   when it is checked out, clean and has an upstream;
// - workspace repos cloned from the Forgejo base with the user's own token.
// Network failures are warnings: nothing is changed and the next run retries.
// What root looks at, makes, moves or removes in a home goes through
// lib/machine/safe-path.ts's walk: a link the user planted is named, never followed
// (git itself runs as the user).
import path from "node:path";
import type { Change } from "../../core/change.ts";
import { warn, type BuildContext } from "../../core/context.ts";
import { UserError } from "../../core/errors.ts";
import { ensureFolder, inspect, moveEntry, removeTree } from "../../machine/safe-path.ts";
import type { RosterUser } from "../../inputs/roster.ts";
import { CLONE_TIMEOUT_MS, gitAs, gitLine, tryGitAs, type Person } from "./git.ts";
import type { OrgSources } from "./org-sources.ts";

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
const movingAside = (code: string) => `${code}.devvm-migrating`;
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

interface PlanContext {
  ctx: BuildContext;
  sources: OrgSources;
  /** Fetch before judging freshness (not under --plan, which changes nothing). */
  fetch: boolean;
  warn(message: string): void;
}

/** Throws UnsafePathError when a link the user planted is on the way: their workspace is then left as it is. */
export async function planWorkspace(p: PlanContext, who: Person, user: RosterUser): Promise<WorkspaceStep[]> {
  const exists = (machinePath: string) => inspect(p.ctx, machinePath) !== null;
  const code = path.join(who.home, "code");
  const steps: WorkspaceStep[] = [];
  let infra = code;
  // Where the infra clone is now (before the planned moves), if anywhere.
  let infraNow: string | undefined = exists(code) ? code : undefined;
  if (user.code_layout === "workspace") {
    infra = path.join(code, "infra");
    if (exists(movingAside(code))) {
      steps.push({ kind: "finish-move", who, code });
      infraNow = movingAside(code);
    } else if (exists(path.join(code, ".git")) && !exists(infra)) {
      steps.push({ kind: "move", who, code });
    } else {
      if (!exists(code)) steps.push({ kind: "create-code", who, code });
      infraNow = exists(infra) ? infra : undefined;
    }
    // While ~/code itself is the clone (moving now), ~/code/REPO is the nested repo: free once the move is done.
    const freeAfterMove = (repo: string) => infraNow === code || !exists(path.join(code, repo));
    for (const repo of user.repos ?? []) {
      if (
        infraNow &&
        exists(path.join(infraNow, repo, ".git")) &&
        freeAfterMove(repo) &&
        !(await trackedBy(p.ctx, who, infraNow, repo))
      ) {
        steps.push({ kind: "hoist", who, from: path.join(infra, repo), to: path.join(code, repo) });
      }
    }
  }
  steps.push(...(await planInfra(p, who, infra, infraNow)));
  for (const repo of user.code_layout === "workspace" ? (user.repos ?? []) : []) {
    const target = path.join(code, repo);
    const hoisted = steps.some((s) => s.kind === "hoist" && s.to === target);
    if (exists(target) || hoisted) {
      const now = hoisted ? path.join(infraNow!, repo) : target;
      steps.push(...(await planRefresh(p, who, now, target)));
    } else if (!p.sources.repoBase)
      p.warn(`not cloning ${repo} for ${who.name}: no Forgejo base (set DEVVM_REPO_BASE)`);
    else steps.push({ kind: "clone-repo", who, name: repo, target, url: `${p.sources.repoBase}/${repo}.git` });
  }
  return steps;
}

async function trackedBy(ctx: BuildContext, who: Person, repo: string, child: string): Promise<boolean> {
  return ((await gitLine(ctx, who, repo, ["ls-files", "--", child])) ?? "") !== "";
}

async function planInfra(
  p: PlanContext,
  who: Person,
  target: string,
  now: string | undefined,
): Promise<WorkspaceStep[]> {
  const forgejo = p.sources.forgejoInfraRemote;
  if (!now) {
    if (!p.sources.infraRemote) {
      p.warn(`not cloning infra for ${who.name}: no infra remote (set DEVVM_INFRA_REMOTE)`);
      return [];
    }
    return [{ kind: "clone-infra", who, target, origin: p.sources.infraRemote, ...(forgejo ? { forgejo } : {}) }];
  }
  if (!inspect(p.ctx, path.join(now, ".git"))) return [];
  if (!forgejo) {
    p.warn(`no forgejo remote for ${now}: set DEVVM_FORGEJO_INFRA_REMOTE`);
    return planRefresh(p, who, now, target);
  }
  const remote = await gitLine(p.ctx, who, now, ["config", "--get", "remote.forgejo.url"]);
  const upstream = await gitLine(p.ctx, who, now, ["rev-parse", "--abbrev-ref", "master@{upstream}"]);
  // Freshened against the upstream it has now, whether or not the wiring works.
  const wire: WorkspaceStep[] =
    upstream === "forgejo/master"
      ? []
      : [{ kind: "wire-forgejo", who, repo: target, forgejo: remote ?? forgejo, addRemote: remote === undefined }];
  return [...wire, ...(await planRefresh(p, who, now, target))];
}

/** Fetch all remotes; a fast-forward of master only when it is checked out, clean and has an upstream. */
async function planRefresh(p: PlanContext, who: Person, now: string, target: string): Promise<WorkspaceStep[]> {
  if (p.fetch) {
    const failed = await tryGitAs(p.ctx, who, ["-C", now, "fetch", "--all", "--prune", "--quiet"]);
    if (failed) p.warn(`could not fetch ${target} for ${who.name}: ${failed}; left as it was`);
  }
  const upstream = await gitLine(p.ctx, who, now, ["rev-parse", "--abbrev-ref", "master@{upstream}"]);
  if (!upstream) {
    p.warn(`${target}: master has no upstream; not freshened`);
    return [];
  }
  const behind = Number(await gitLine(p.ctx, who, now, ["rev-list", "--count", "master..master@{upstream}"]));
  if (!(behind > 0)) return [];
  const branch = await gitLine(p.ctx, who, now, ["symbolic-ref", "--short", "-q", "HEAD"]);
  const dirty = (await gitAs(p.ctx, who, ["-C", now, "status", "--porcelain"])).stdout.trim() !== "";
  const ancestor =
    (
      await gitAs(p.ctx, who, ["-C", now, "merge-base", "--is-ancestor", "master", "master@{upstream}"], {
        okCodes: [1],
      })
    ).exitCode === 0;
  const why =
    branch !== "master"
      ? `on ${branch ? `branch ${branch}` : "a detached HEAD"}, not master`
      : dirty
        ? "it has uncommitted changes"
        : !ancestor
          ? `master has commits that ${upstream} does not`
          : undefined;
  if (why) {
    p.warn(`${target} is ${behind} commit${behind === 1 ? "" : "s"} behind ${upstream} but ${why}; left as it was`);
    return [];
  }
  return [{ kind: "fast-forward", who, repo: target, upstream, commits: behind }];
}

// ---- applying ---------------------------------------------------------------

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
