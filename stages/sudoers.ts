import path from "node:path";
import type { BuildContext } from "../lib/core/context.ts";
import { CommandError, UserError } from "../lib/core/errors.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, planResources, type Resource } from "../lib/machine/files.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import type { Stage } from "../lib/core/stage.ts";

export const DROP_IN = "/etc/sudoers.d/t3-autopair";
const SOURCE = "service/sudoers-t3-autopair";

/**
 * One malformed file in /etc/sudoers.d breaks sudo for everyone (docs/devvm.md
 * stage 12), so the new file is checked with `visudo -cf` as the temporary
 * file it is before the rename; a refused one never replaces the live one.
 */
async function writeSudoersDropIn(ctx: BuildContext, temporaryFile: string): Promise<void> {
  try {
    await run(ctx, "visudo", ["-c", "-f", temporaryFile]);
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    const said = error.stderr.trim().split(temporaryFile).join(`new ${DROP_IN}`);
    throw new UserError(
      `visudo refused the new ${DROP_IN}; the live file was left as it was:\n${said}`,
      `fix files/${SOURCE}`,
    );
  }
}

function resources(ctx: BuildContext): Resource[] {
  return [
    {
      kind: "file",
      path: DROP_IN,
      mode: 0o440,
      content: repoFile(ctx, SOURCE),
      validate: (temporary) => writeSudoersDropIn(ctx, temporary),
    },
  ];
}

export default {
  name: "sudoers",
  description: `Lets t3-dispatch run only /usr/local/bin/t3-mint as root (${path.basename(DROP_IN)} in /etc/sudoers.d, checked by visudo first)`,
  async check(ctx) {
    const planned = resources(ctx);
    return { ...(await planResources(ctx, planned)), plan: planned };
  },
  apply: async (ctx, { plan }) => applyResources(ctx, plan),
} satisfies Stage<Resource[]>;
