import { hostPath } from "../lib/core/context.ts";
import { applyResources, lstatOrNull, planResources, type Resource } from "../lib/machine/files.ts";
import type { BuildContext } from "../lib/core/context.ts";
import type { Stage } from "../lib/core/stage.ts";

// The admin's clones hold decrypted secrets; the tree was once 0775 and any
// user could read them by path (docs/devvm.md stage 10). o-rx closes it.
const resources = (ctx: BuildContext): Resource[] => [{ kind: "perms", path: ctx.settings.adminCodeDir, clear: 0o005 }];

export default {
  name: "harden-admin-tree",
  firstBoot: "the admin's home comes with the machine",
  description: "Makes the admin's ~/code (decrypted secrets) neither readable nor listable by other users",
  async check(ctx) {
    if (!(await lstatOrNull(hostPath(ctx, ctx.settings.adminCodeDir))))
      return { skip: `${ctx.settings.adminCodeDir} does not exist here` };
    const planned = resources(ctx);
    return { ...(await planResources(ctx, planned)), plan: planned };
  },
  apply: async (ctx, { plan }) => applyResources(ctx, plan),
} satisfies Stage<Resource[]>;
