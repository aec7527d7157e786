// Names the roster may not give a person: the system's accounts and the
// builder's own. The users stage is additive: a roster entry named like an
// existing account would be "adopted", handing a system account (root,
// t3-dispatch) a login shell's groups, sudo for an admin. Known names are
// refused when the roster is parsed; the target machine's own system
// accounts and groups once its root is known (checkMachineAccounts).
import type { InputProblem } from "../core/errors.ts";
import { accountFilePath, readIds, type AccountFile } from "../machine/accounts.ts";

const DEBIAN_BASE = "a Debian system account";
const RESERVED = new Map<string, string>([
  // Debian 12's base-passwd (passwd.master), nobody included.
  ...[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "_apt",
    "nobody",
  ].map((n) => [n, DEBIAN_BASE] as [string, string]),
  // stages/service-helpers.ts DISPATCH_ACCOUNT.
  ["t3-dispatch", "the builder's own service account"],
  // lib/users/roster-accounts.ts TIER_GROUPS and ADMIN_GROUPS, stages/vault-tokens.ts CODEX_GROUP: a user's own group could not be made.
  ...["devvm-admin", "devvm-power-user", "devvm-namespace-owner", "sudo", "docker", "code-shared", "codex-shared"].map(
    (n) => [n, "a group the builder gives users"] as [string, string],
  ),
]);

/** Every name refused whatever the machine: for tests that keep this list in step with the stages. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(RESERVED.keys());

/** Why a name may not be a roster user, when it is one the builder knows without looking at the machine. */
export function reservedNameProblem(name: string): string | undefined {
  const why = RESERVED.get(name);
  return why && `"${name}" is refused as an OS user name: it is ${why}; the roster is for people's accounts`;
}

// login.defs' UID_MIN and UID_MAX on Debian: people's accounts. Below is
// the system's, above are reserved ranges and nobody (65534).
const PERSON_UIDS = { min: 1000, max: 59999 };

/**
 * Roster users whose names are system accounts or system groups in the
 * target root's /etc/passwd and /etc/group. People's accounts of the live
 * box (uid 1000 and up) are adopted as before; a bare --root has no files
 * and so nothing to find.
 */
export function checkMachineAccounts(
  root: string,
  users: readonly string[],
  lineOfUser: (user: string) => number | undefined,
): InputProblem[] {
  const passwd = idsIn(root, "passwd");
  const group = idsIn(root, "group");
  const problems: InputProblem[] = [];
  for (const user of users) {
    const uid = passwd.ids.get(user);
    const gid = group.ids.get(user);
    let message: string | undefined;
    if (uid !== undefined && (uid < PERSON_UIDS.min || uid > PERSON_UIDS.max)) {
      message = `${user} is a system account on this machine (uid ${uid} in ${passwd.file}), not a person's (uid ${PERSON_UIDS.min} to ${PERSON_UIDS.max}): choose another OS user name`;
    } else if (uid === undefined && gid !== undefined && gid < PERSON_UIDS.min) {
      message = `${user} is a system group on this machine (gid ${gid} in ${group.file}); an account of that name could not have its own group: choose another OS user name`;
    }
    if (message) problems.push({ file: "roster.yaml", line: lineOfUser(user), message: `users.${user}: ${message}` });
  }
  return problems;
}

function idsIn(root: string, file: AccountFile): { file: string; ids: Map<string, number> } {
  let ids = new Map<string, number>();
  try {
    ids = new Map(readIds(root, file).map(({ name, id }) => [name, id]));
  } catch {
    // Unreadable: nothing known about the machine's accounts; the static list still holds.
  }
  return { file: accountFilePath(root, file), ids };
}
