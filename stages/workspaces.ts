import { existsSync } from "node:fs";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { applyResources, checkResources, type Resource } from "../lib/machine/files.ts";
import { readAccountTable } from "../lib/machine/accounts.ts";
import { inspectForWriting, unlessUnsafe } from "../lib/machine/safe-path.ts";
import type { Check, Stage } from "../lib/core/stage.ts";
import { applyStep, describeStep, planWorkspace, type WorkspaceStep } from "../lib/users/workspace/clones.ts";
import type { Person } from "../lib/users/workspace/git.ts";
import { readAdminCluster, userKubeconfig } from "../lib/users/workspace/kubeconfig.ts";
import { orgSources, type OrgSources } from "../lib/users/workspace/org-sources.ts";

const GIT_PATHS = ["/usr/bin/git", "/usr/local/bin/git"];

/** What check planned (after its fetches), for apply: the network is asked once per build. */
interface Plan {
  steps: WorkspaceStep[];
  kubeconfigs: Resource[];
}

/** The non-admins who work here now: the admin's tree is never touched, a parked user is left as they are. */
function people(ctx: BuildContext): Person[] {
  const table = readAccountTable(ctx);
  return Object.entries(ctx.inputs.roster)
    .filter(([, user]) => user.tier !== "admin" && !user.parked)
    .sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([name]) => {
      const account = table.users.get(name);
      return account ? [{ name, uid: ctx.accounts.uid(name), gid: account.gid, home: account.home }] : [];
    });
}

/** ~/.kube/config for each person without one (and ~/.kube when that is missing too); a link planted on the way is named and skips that person. */
async function kubeconfigs(ctx: BuildContext, sources: OrgSources, who: Person[]): Promise<Resource[]> {
  const missing: Array<{ person: Person; folder: boolean }> = [];
  for (const person of who) {
    const kube = path.join(person.home, ".kube");
    const found = await unlessUnsafe(ctx, () => ({
      folder: inspectForWriting(ctx, kube) !== null,
      config: inspectForWriting(ctx, path.join(kube, "config")) !== null,
    }));
    if (found && !found.config) missing.push({ person, folder: found.folder });
  }
  if (missing.length === 0) return [];
  const cluster = readAdminCluster(hostPath(ctx, sources.adminKubeconfig), sources.adminKubeconfig);
  const why =
    "problem" in cluster ? cluster.problem : !sources.oidcIssuer ? "no OIDC issuer (set DEVVM_OIDC_ISSUER)" : undefined;
  if (why || "problem" in cluster) {
    warn(ctx, `no kubeconfig for ${missing.map((m) => m.person.name).join(", ")}: ${why}`);
    return [];
  }
  const content = userKubeconfig(cluster, sources.oidcIssuer!);
  return missing.flatMap(({ person, folder }): Resource[] => {
    const own = { owner: person.name, group: ctx.accounts.groupName(person.gid) };
    const dir = path.join(person.home, ".kube");
    return [
      ...(folder ? [] : [{ kind: "dir", path: dir, mode: 0o700, ...own } as const]),
      { kind: "file", path: path.join(dir, "config"), mode: 0o600, content, ...own },
    ];
  });
}

export default {
  name: "workspaces",
  firstBoot: "the users' clones and kubeconfigs are theirs, made on the machine",
  description:
    "Gives each non-admin their code (locked infra clone, forgejo remote, guarded fast-forward, workspace repos with their own token) and an OIDC kubeconfig",
  async check(ctx): Promise<Check<Plan>> {
    if (underRoot(ctx)) return { skip: "clones are made as each user, on the machine itself, not under --root" };
    // On a fresh box under --plan, apt has not installed it yet.
    if (!GIT_PATHS.some((p) => existsSync(p))) return { skip: "git is not installed (stage apt installs it)" };
    const sources = orgSources(ctx);
    const who = people(ctx);
    const steps: WorkspaceStep[] = [];
    const planning = { ctx, sources, fetch: !ctx.planOnly, warn: (message: string) => warn(ctx, message) };
    // A link the user planted on the way leaves that user's workspace as it is (named); the others go on.
    for (const person of who)
      steps.push(
        ...((await unlessUnsafe(ctx, () => planWorkspace(planning, person, ctx.inputs.roster[person.name]!))) ?? []),
      );
    const plan = { steps, kubeconfigs: await kubeconfigs(ctx, sources, who) };
    // A kubeconfig written once is the user's: not managed (nor in the manifest) after that.
    const changes = [...steps.map(describeStep), ...(await checkResources(ctx, plan.kubeconfigs))];
    return { changes, managed: [], plan };
  },
  async apply(ctx, { plan }) {
    const changes: Change[] = [];
    for (const step of plan.steps) changes.push(...((await unlessUnsafe(ctx, () => applyStep(ctx, step))) ?? []));
    return [...changes, ...(await applyResources(ctx, plan.kubeconfigs))];
  },
} satisfies Stage<Plan>;
