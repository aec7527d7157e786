// Each non-admin's code (docs/devvm.md "Per-user", Code), planned as data from
// what is on disk and in git, then applied step by step as the user (clone-steps.ts):
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
import type { BuildContext } from "../../core/context.ts";
import { inspect } from "../../machine/safe-path.ts";
import type { RosterUser } from "../../inputs/roster.ts";
import { movingAside, type WorkspaceStep } from "./clone-steps.ts";
import { gitAs, gitLine, tryGitAs, type Person } from "./git.ts";
import type { OrgSources } from "./org-sources.ts";

// The steps and how each is done live in clone-steps.ts; the stage takes them from here, with the plan.
export { applyStep, describeStep, type WorkspaceStep } from "./clone-steps.ts";

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
