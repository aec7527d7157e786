import { underRoot } from "../lib/core/context.ts";
import {
  checkGlobalCli,
  globalCliInventory,
  installGlobalCli,
  prepareGlobalCli,
  UNDER_ROOT_REASON,
  type GlobalCli,
  type GlobalCliPlan,
} from "../lib/tools/npm-global.ts";
import type { Stage } from "../lib/core/stage.ts";
import { withNodeForInstalls } from "./node.ts";

// Its postinstall (`node install.cjs`) puts the native binary from
// @anthropic-ai/claude-code-linux-x64 in place; without it `claude` says its
// native binary is not installed. No other install script may run.
export const CLAUDE_CODE: GlobalCli = {
  name: "@anthropic-ai/claude-code",
  bins: ["claude"],
  allowScripts: ["@anthropic-ai/claude-code"],
};

export default {
  name: "claude-code",
  description: "Installs the pinned Claude Code (@anthropic-ai/claude-code) for all users: /usr/local/bin/claude",
  check: async (ctx) =>
    underRoot(ctx)
      ? { skip: UNDER_ROOT_REASON }
      : checkGlobalCli(ctx, CLAUDE_CODE, ctx.inputs.pins.npm[CLAUDE_CODE.name]),
  apply: async (ctx, { plan }) => installGlobalCli(ctx, CLAUDE_CODE, ctx.inputs.pins.npm[CLAUDE_CODE.name], plan),
  // npm installs it into a staging folder while apt runs; apply moves it into place.
  prepare(ctx) {
    if (!underRoot(ctx))
      prepareGlobalCli(ctx, CLAUDE_CODE, ctx.inputs.pins.npm[CLAUDE_CODE.name], (work) =>
        withNodeForInstalls(ctx, work),
      );
  },
  inventory: (ctx) => globalCliInventory(ctx, CLAUDE_CODE),
} satisfies Stage<GlobalCliPlan>;
