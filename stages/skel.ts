import { existsSync, statSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import { applyResources, planResources, type Resource } from "../lib/machine/files.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import type { Stage } from "../lib/core/stage.ts";

// Only these folders of the shared config are linked: secrets and hooks
// never travel through skel (docs/devvm.md stage 9).
export const SHARED_CLAUDE_FOLDERS = ["skills", "rules", "agents", "commands"] as const;

function resources(ctx: BuildContext): Resource[] {
  const links: Resource[] = SHARED_CLAUDE_FOLDERS.map((name) => path.join(ctx.settings.sharedClaudeDir, name))
    .filter((target) => isDirectory(hostPath(ctx, target)))
    .map((target) => ({ kind: "symlink", path: `/etc/skel/.claude/${path.basename(target)}`, target }));
  return [
    { kind: "dir", path: "/etc/skel", mode: 0o755 },
    { kind: "file", path: "/etc/skel/start-claude.sh", mode: 0o755, content: repoFile(ctx, "skel/start-claude.sh") },
    { kind: "file", path: "/etc/skel/.tmux.conf", mode: 0o644, content: repoFile(ctx, "skel/.tmux.conf") },
    ...(links.length > 0 ? [{ kind: "dir", path: "/etc/skel/.claude", mode: 0o755 } as const] : []),
    ...links,
  ];
}

function isDirectory(file: string): boolean {
  return existsSync(file) && statSync(file).isDirectory();
}

export default {
  name: "skel",
  description: "Sets up /etc/skel: the start-claude.sh launcher, .tmux.conf and links into the shared Claude config",
  async check(ctx) {
    const planned = resources(ctx);
    return { ...(await planResources(ctx, planned)), plan: planned };
  },
  apply: async (ctx, { plan }) => applyResources(ctx, plan),
} satisfies Stage<Resource[]>;
