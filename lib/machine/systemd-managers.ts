// The running systemd managers a change of unit files must reach: the
// system's, and each user's own (user@UID.service, running while the user is
// logged in or lingers), which runs the user's tmux panes in its scopes.
// "Already reloaded?" is systemd's own answer (NeedDaemonReload=, which
// compares the files a loaded unit came from with those on disk now), so a
// build killed between writing a drop-in and the reload still reloads next time.
import type { BuildContext } from "../core/context.ts";
import { readPasswd } from "./accounts.ts";
import { run } from "./exec.ts";
import { activeServices, systemctl } from "./systemd.ts";

export interface UserManager {
  user: string;
  uid: number;
  /** The user's primary group. */
  gid: number;
}

/** The users whose own systemd manager runs now. Only asked when systemd runs this machine. */
export async function runningUserManagers(ctx: BuildContext): Promise<UserManager[]> {
  const listed = await activeServices(ctx, "user@*.service");
  const accounts = readPasswd(ctx.root);
  return listed
    .flatMap((unit) => /^user@(\d+)\.service$/.exec(unit)?.[1] ?? [])
    .map(Number)
    .sort((a, b) => a - b)
    .flatMap((uid) => {
      const entry = accounts.find((a) => a.uid === uid);
      return entry ? [{ uid, user: entry.name, gid: entry.gid }] : [];
    });
}

/** The units of the list that exist and whose files changed since the system's manager loaded them. */
export async function unitsNeedingReload(ctx: BuildContext, units: string[]): Promise<string[]> {
  if (units.length === 0) return [];
  const shown = await systemctl(ctx, ["show", "--property=NeedDaemonReload", "--value", ...units]);
  // One value per unit, in order, the units separated by an empty line.
  const values = shown.stdout.split(/\n\n/).map((v) => v.trim());
  return units.filter((_, i) => values[i] === "yes");
}

/**
 * `systemctl --user` against one user's manager, run as that user with a
 * clean environment. Not `--machine=USER@.host` from root: that needs the
 * user's D-Bus (dbus-user-session), which a box need not have; as the user,
 * systemctl reaches the manager through its own socket
 * ($XDG_RUNTIME_DIR/systemd/private) when there is no bus.
 */
export function userSystemctl(ctx: BuildContext, manager: UserManager, args: string[], okCodes: number[] = []) {
  return run(
    ctx,
    "setpriv",
    [
      `--reuid=${manager.uid}`,
      `--regid=${manager.gid}`,
      "--init-groups",
      "--",
      "env",
      "-i",
      `XDG_RUNTIME_DIR=/run/user/${manager.uid}`,
      "PATH=/usr/bin:/bin",
      "systemctl",
      "--user",
      ...args,
    ],
    { okCodes, cwd: "/" },
  );
}

/**
 * Whether a user's manager has not loaded the user unit drop-ins on disk
 * now: asked of its init.scope, which every manager has and which any scope
 * drop-in reaches. Unknown (the manager did not answer) counts as yes.
 */
export async function userManagerNeedsReload(ctx: BuildContext, manager: UserManager): Promise<boolean> {
  const shown = await userSystemctl(
    ctx,
    manager,
    ["show", "--property=NeedDaemonReload", "--value", "init.scope"],
    [1],
  );
  return shown.exitCode !== 0 || shown.stdout.trim() !== "no";
}
