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

// Its native binary comes in an optional dependency; it has no install script.
export const CODEX: GlobalCli = { name: "@openai/codex", bins: ["codex"] };

export default {
  name: "codex",
  description: "Installs the pinned Codex CLI (@openai/codex) for all users: /usr/local/bin/codex",
  check: async (ctx) =>
    underRoot(ctx) ? { skip: UNDER_ROOT_REASON } : checkGlobalCli(ctx, CODEX, ctx.inputs.pins.npm[CODEX.name]),
  apply: async (ctx, { plan }) => installGlobalCli(ctx, CODEX, ctx.inputs.pins.npm[CODEX.name], plan),
  // npm installs it into a staging folder while apt runs; apply moves it into place.
  prepare(ctx) {
    if (!underRoot(ctx))
      prepareGlobalCli(ctx, CODEX, ctx.inputs.pins.npm[CODEX.name], (work) => withNodeForInstalls(ctx, work));
  },
  inventory: (ctx) => globalCliInventory(ctx, CODEX),
} satisfies Stage<GlobalCliPlan>;
