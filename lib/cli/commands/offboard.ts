// `build.ts offboard USER`: the one irreversible step of offboarding, only
// when asked by name, only for a user the builder has already cut (out of
// roster.yaml, login locked): the home archived first, then the account
// deleted, the home removed, the user's env file and record entry dropped.
// A stage of its own, so the runner prints it and --plan shows exactly this.
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { create } from "tar";
import { action, type Change } from "../../core/change.ts";
import { hostPath, type BuildContext } from "../../core/context.ts";
import { UserError } from "../../core/errors.ts";
import { run } from "../../machine/exec.ts";
import { applyResources } from "../../machine/files.ts";
import { appliedRosterFile, readAppliedRoster } from "../../users/applied-roster.ts";
import { removeTree } from "../../machine/safe-path.ts";
import { readAccountTable } from "../../machine/accounts.ts";
import { envFile } from "../../users/roster-accounts.ts";
import type { Stage } from "../../core/stage.ts";
import preflight from "../../../stages/preflight.ts";
import type { Command } from "../command.ts";
import { runPipeline } from "../run-pipeline.ts";

export const OFFBOARD_ARCHIVES = "/var/backups/devvm-offboarded";

export const offboardCommand: Command = {
  // Preflight (root, the build lock), then that one stage. It deletes: it manages nothing the manifest records.
  run: (c) => runPipeline(c, [preflight, offboardStage(c, c.cli.user!)], { writesOutput: false }),
};

/** Refuses (exit 2) anyone who is still in the roster or was never cut. */
export function offboardStage(ctx: Pick<BuildContext, "inputs" | "root">, user: string, now = new Date()): Stage {
  if (ctx.inputs.roster[user])
    throw new UserError(
      `${user} is still in roster.yaml`,
      `remove them from roster.yaml and run a build (which cuts them) first`,
    );
  if (!readAppliedRoster(ctx).cut.includes(user))
    throw new UserError(
      `${user} has not been cut by a build`,
      "only a user a build has cut (dropped from roster.yaml, login locked) can be offboarded",
    );
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  const archive = `${OFFBOARD_ARCHIVES}/${user}-${stamp}.tar.gz`;
  const steps = (c: BuildContext) => {
    const account = readAccountTable(c).users.get(user);
    const home = account?.home && existsSync(hostPath(c, account.home)) ? account.home : undefined;
    return { home, account: account !== undefined, env: existsSync(hostPath(c, envFile(user))) };
  };
  const changesOf = (s: ReturnType<typeof steps>): Change[] => {
    return [
      ...(s.home ? [action(`archive ${s.home} to ${archive} (root, 0600)`)] : []),
      ...(s.account ? [action(`delete the account ${user} (userdel)`)] : []),
      ...(s.home ? [action(`remove ${s.home}`)] : []),
      ...(s.env ? [action(`remove ${envFile(user)} (its t3 port becomes free)`)] : []),
      action(`forget ${user} in the record of cut users`),
    ];
  };
  return {
    name: "offboard",
    description: `Archives ${user}'s home, then deletes the account (asked by name)`,
    async check(c) {
      return { changes: changesOf(steps(c)), managed: [] };
    },
    async apply(c) {
      const s = steps(c);
      if (s.home) await archiveHome(hostPath(c, s.home), hostPath(c, archive));
      if (s.account) await run(c, "userdel", [user]);
      // Folder by folder through descriptors (lib/machine/safe-path.ts): a link inside, or one swapped in while it runs, is removed, never followed.
      if (s.home) removeTree(c, s.home);
      if (s.env) await fs.rm(hostPath(c, envFile(user)), { force: true });
      const record = readAppliedRoster(c);
      await applyResources(c, [appliedRosterFile({ ...record, cut: record.cut.filter((u) => u !== user) })]);
      return changesOf(s);
    },
  };
}

/** Written under a temporary name and renamed when complete: a half archive never looks like a whole one. */
async function archiveHome(home: string, archive: string): Promise<void> {
  // Root's alone: the archive holds someone's private files.
  await fs.mkdir(path.dirname(archive), { recursive: true, mode: 0o700 });
  await fs.chmod(path.dirname(archive), 0o700);
  const partial = `${archive}.partial`;
  try {
    // Owners and modes as they are (not portable): a restore gives the user back their files.
    await create({ gzip: true, file: partial, cwd: path.dirname(home), portable: false }, [path.basename(home)]);
    await fs.chmod(partial, 0o600);
    await fs.rename(partial, archive);
  } catch (error) {
    await fs.rm(partial, { force: true });
    throw error;
  }
}
