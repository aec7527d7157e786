import { existsSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import { run } from "../lib/machine/exec.ts";
import { goBuild } from "../lib/tools/go-build.ts";
import {
  applyResources,
  checkAttributes,
  checkResources,
  fixAttributes,
  managedBy,
  writeFileAtomic,
  type Resource,
} from "../lib/machine/files.ts";
import { BIN_DIR } from "../lib/machine/layout.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import { dispatchSource, settingVariables } from "../lib/inputs/settings.ts";
import type { Stage } from "../lib/core/stage.ts";
import { addPendingRestarts } from "../lib/machine/systemd.ts";
import { LEFTOVERS, removeLeftovers, scratchPrefix } from "../lib/machine/leftovers.ts";

export const DISPATCH_ACCOUNT = "t3-dispatch";
export const DISPATCH_BIN = `${BIN_DIR}/t3-dispatch`;
export const DISPATCH_UNIT = "t3-dispatch.service";

/** The helper programs this project writes (files/service/), installed 0755. */
const scripts = (ctx: BuildContext): Resource[] =>
  ["t3-mint", "t3-state-backup", "t3-watchdog", "tmux-persist", "claude-auth-sync"].map((name) => ({
    kind: "file",
    path: `${BIN_DIR}/${name}`,
    mode: 0o755,
    content: repoFile(ctx, `service/${name}`),
  }));

const sourceOf = (ctx: BuildContext) => dispatchSource(ctx.settings, (p) => existsSync(hostPath(ctx, p)));

type DispatchPlan = { build: true } | { build: false; changes: Change[] } | { absent: string };

/** t3-dispatch is built only when absent; once there, only its mode and owner are kept. */
async function planDispatch(ctx: BuildContext): Promise<DispatchPlan> {
  if (existsSync(hostPath(ctx, DISPATCH_BIN)))
    return { build: false, changes: await checkAttributes(ctx, DISPATCH_BIN, 0o755) };
  const source = sourceOf(ctx);
  if (existsSync(path.join(hostPath(ctx, source), "go.mod"))) return { build: true };
  const message = `${DISPATCH_BIN} is not built and its source ${source} has no go.mod`;
  if (ctx.strict)
    throw new UserError(
      message,
      `clone t3-dispatch there or set ${settingVariables.t3DispatchSource}; without --strict this is a warning`,
    );
  return { absent: message };
}

async function buildDispatch(ctx: BuildContext): Promise<void> {
  await removeLeftovers(ctx, tmpdir(), LEFTOVERS.goBuild);
  const scratch = await fs.mkdtemp(path.join(tmpdir(), scratchPrefix("devvm-go-")));
  try {
    const output = path.join(scratch, "t3-dispatch");
    await goBuild(ctx, { source: hostPath(ctx, sourceOf(ctx)), output, scratch });
    await writeFileAtomic(hostPath(ctx, DISPATCH_BIN), await fs.readFile(output), { mode: 0o755, uid: 0, gid: 0 });
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

export default {
  name: "service-helpers",
  description:
    "Installs t3-mint, t3-state-backup, t3-watchdog, tmux-persist and claude-auth-sync, the t3-dispatch system account, and builds t3-dispatch when absent",
  async check(ctx) {
    const changes: Change[] = [];
    if (!ctx.accounts.hasUser(DISPATCH_ACCOUNT))
      changes.push({ kind: "action", description: `create system account ${DISPATCH_ACCOUNT}` });
    changes.push(...(await checkResources(ctx, scripts(ctx))));
    const dispatch = await planDispatch(ctx);
    if ("absent" in dispatch) warn(ctx, `${dispatch.absent}; t3-dispatch.service waits for it`);
    else if (dispatch.build)
      changes.push({ kind: "action", description: `build ${DISPATCH_BIN} from ${sourceOf(ctx)}` });
    else changes.push(...dispatch.changes);
    return { changes, managed: [...managedBy(scripts(ctx)), { path: DISPATCH_BIN }], plan: dispatch };
  },
  async apply(ctx, { plan: dispatch }) {
    const changes: Change[] = [];
    if (!ctx.accounts.hasUser(DISPATCH_ACCOUNT)) {
      // No home, no login shell: a service account only.
      const root = underRoot(ctx) ? ["--root", ctx.root] : [];
      await run(ctx, "useradd", [
        ...root,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        DISPATCH_ACCOUNT,
      ]);
      ctx.accounts.reload();
      changes.push({ kind: "action", description: `create system account ${DISPATCH_ACCOUNT}` });
    }
    changes.push(...(await applyResources(ctx, scripts(ctx))));
    if ("build" in dispatch && dispatch.build) {
      await buildDispatch(ctx);
      // Done by the units stage; recorded so that a build failing before then still restarts it next time.
      await addPendingRestarts(ctx, [DISPATCH_UNIT]);
      changes.push({ kind: "action", description: `build ${DISPATCH_BIN} from ${sourceOf(ctx)}` });
    } else if ("build" in dispatch && dispatch.changes.length > 0) {
      await fixAttributes(ctx, DISPATCH_BIN, 0o755);
      changes.push(...dispatch.changes);
    }
    return changes;
  },
} satisfies Stage<DispatchPlan>;
