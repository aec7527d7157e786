import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, planResources, type Resource } from "../lib/machine/files.ts";
import { readAccountTable } from "../lib/machine/accounts.ts";
import { BIN_DIR } from "../lib/machine/layout.ts";
import { inspect } from "../lib/machine/safe-path.ts";
import { OS_USER } from "../lib/inputs/roster.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import type { Stage } from "../lib/core/stage.ts";

const LAUNCHER = "start-claude.sh";
export const TMUX_PERSIST = `${BIN_DIR}/tmux-persist`;
export const TMUX_PERSIST_STATE = "/var/lib/tmux-persist";

interface SessionsPlan {
  /** Each non-admin's ~/start-claude.sh, where no link of theirs is in the way. */
  launchers: Resource[];
  /** The users whose tmux save is still the old single file. */
  oldSaves: string[];
}

/**
 * The current launcher in each non-admin's home (skel reaches new accounts
 * only: existing users never got a fixed one). Admins keep theirs; a parked
 * user is left as they are; a user without a home gets none made.
 */
function launcherCopies(ctx: BuildContext): Resource[] {
  const table = readAccountTable(ctx);
  const content = repoFile(ctx, `skel/${LAUNCHER}`);
  return Object.entries(ctx.inputs.roster)
    .filter(([, user]) => user.tier !== "admin" && !user.parked)
    .sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([name]): Resource[] => {
      const account = table.users.get(name);
      if (!account || !inspect(ctx, account.home)?.isDirectory()) return [];
      const group = ctx.accounts.groupName(account.gid);
      return [{ kind: "file", path: path.join(account.home, LAUNCHER), mode: 0o755, content, owner: name, group }];
    });
}

/**
 * The users whose save is still tmux-persist's old single file, USER.tsv
 * itself rather than the link to their newest snapshot. Looked for on the
 * machine only: the program knows no other root.
 */
function oldSaves(ctx: BuildContext): string[] {
  const state = hostPath(ctx, TMUX_PERSIST_STATE);
  if (underRoot(ctx) || !existsSync(state)) return [];
  // Dirents are lstat's: a link (the series' USER.tsv) is not a file.
  return readdirSync(state, { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".tsv") && OS_USER.test(entry.name.slice(0, -4)))
    .map((entry) => entry.name.slice(0, -4))
    .sort();
}

/** The installed tmux-persist knows `migrate` only when it is this checkout's. */
function currentTmuxPersist(ctx: BuildContext): boolean {
  const installed = hostPath(ctx, TMUX_PERSIST);
  return existsSync(installed) && readFileSync(installed).equals(repoFile(ctx, "service/tmux-persist"));
}

const migration = (user: string) =>
  action(`move ${user}'s old single tmux save (${TMUX_PERSIST_STATE}/${user}.tsv) into the series of snapshots`);

export default {
  name: "sessions",
  firstBoot: "it acts on the machine's users' homes and their saved tmux sessions",
  description:
    "Gives each non-admin the current start-claude.sh launcher (admins keep theirs) and moves tmux-persist's old single save of a user into the series of snapshots",
  async check(ctx) {
    const all = launcherCopies(ctx);
    // A link the user planted at ~/start-claude.sh is named (a warning) and left out, with nothing done through it.
    const pending = await planResources(ctx, all);
    const kept = new Set(pending.managed.map((m) => m.path));
    let saves = oldSaves(ctx);
    if (saves.length > 0 && !currentTmuxPersist(ctx)) {
      warn(
        ctx,
        `${saves.map((u) => `${TMUX_PERSIST_STATE}/${u}.tsv`).join(", ")}: moved into the series of snapshots once ${TMUX_PERSIST} is the current one (stage service-helpers, which a full build runs first)`,
      );
      saves = [];
    }
    const changes: Change[] = [...pending.changes, ...saves.map(migration)];
    return {
      changes,
      managed: pending.managed,
      plan: { launchers: all.filter((r) => kept.has(r.path)), oldSaves: saves },
    };
  },
  async apply(ctx, { plan }) {
    const changes = await applyResources(ctx, plan.launchers);
    if (plan.oldSaves.length > 0) {
      // The program's own migration, which its save and restore would also do: one way to read the old file.
      const said = await run(ctx, TMUX_PERSIST, ["migrate", ...plan.oldSaves]);
      for (const line of said.stdout.split("\n").filter(Boolean)) ctx.log.info(line);
      changes.push(...plan.oldSaves.map(migration));
    }
    return changes;
  },
} satisfies Stage<SessionsPlan>;
