// The stage of an npm CLI installed for all users at its version in
// pins.json's npm section (claude-code, codex): a prefix of its own per
// version under /opt/devvm/npm, linked from /usr/local/bin
// (lib/tools/npm-global.ts). Not a stage itself: the factory of those stages.
// t3 installs the same way but has a stage of its own: a health check and
// copies of every t3 database gate its switch (stages/t3.ts).
import type { BuildContext } from "../lib/core/context.ts";
import { underRoot } from "../lib/core/context.ts";
import type { Stage } from "../lib/core/stage.ts";
import type { Pins } from "../lib/inputs/pins.ts";
import {
  checkGlobalCli,
  globalCliInventory,
  installGlobalCli,
  prepareGlobalCli,
  UNDER_ROOT_REASON,
  type GlobalCli,
  type GlobalCliPlan,
} from "../lib/tools/npm-global.ts";
import { withNodeForInstalls } from "./node.ts";

export interface NpmCliSpec {
  /** The stage's name: its file's name. */
  name: string;
  /** One line, printed by --list. */
  description: string;
  /** The npm package; pins.json's npm section pins it. */
  package: keyof Pins["npm"];
  /** Its commands: exactly the keys of its package.json "bin"; linked into /usr/local/bin. */
  bins: string[];
  /** Packages whose install scripts may run; any other install script fails the install. */
  allowScripts?: string[];
}

export function npmCliStage(spec: NpmCliSpec) {
  const cli: GlobalCli = {
    name: spec.package,
    bins: spec.bins,
    ...(spec.allowScripts ? { allowScripts: spec.allowScripts } : {}),
  };
  const pin = (ctx: BuildContext) => ctx.inputs.pins.npm[cli.name];
  return {
    name: spec.name,
    description: spec.description,
    // It skips itself under --root, where it needs no pin either.
    pins: (where) => (where.underRoot ? [] : [`npm.${cli.name}.integrity`]),
    check: async (ctx) => (underRoot(ctx) ? { skip: UNDER_ROOT_REASON } : checkGlobalCli(ctx, cli, pin(ctx))),
    apply: async (ctx, { plan }) => installGlobalCli(ctx, cli, pin(ctx), plan),
    // npm installs it into a staging folder while apt runs; apply moves it into place.
    prepare(ctx) {
      if (!underRoot(ctx)) prepareGlobalCli(ctx, cli, pin(ctx), (work) => withNodeForInstalls(ctx, work));
    },
    inventory: (ctx) => globalCliInventory(ctx, cli),
  } satisfies Stage<GlobalCliPlan>;
}
