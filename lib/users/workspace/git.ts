// git run as a user (never as root in someone's home): their uid, groups,
// HOME and nothing else of the builder's environment. Credentials come only
// from the user's own ~/.git-credentials, read-only; git never prompts, and
// every call has a time limit.
import type { BuildContext } from "../../core/context.ts";
import { CommandError } from "../../core/errors.ts";
import { run, type RunResult } from "../../machine/exec.ts";

export interface Person {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GitOptions {
  okCodes?: number[];
  timeoutMs?: number;
}

// The user's ~/.git-credentials, read through git's store helper but never
// written: git's own `store` erases a credential the server refuses once,
// and a passing 401 must not delete someone's token. The empty value first
// drops other helpers, which could prompt.
const READ_ONLY_CREDENTIALS = [
  "-c",
  "credential.helper=",
  "-c",
  'credential.helper=!f() { test "$1" = get && exec git credential-store get; }; f',
];

export const FETCH_TIMEOUT_MS = 60_000;
export const CLONE_TIMEOUT_MS = 10 * 60_000;

export function gitAs(
  ctx: Pick<BuildContext, "log">,
  who: Person,
  args: string[],
  options: GitOptions = {},
): Promise<RunResult> {
  const env = [
    `HOME=${who.home}`,
    `USER=${who.name}`,
    `LOGNAME=${who.name}`,
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    "GIT_TERMINAL_PROMPT=0",
    "GCM_INTERACTIVE=never",
  ];
  return run(
    ctx,
    "setpriv",
    [
      `--reuid=${who.name}`,
      `--regid=${who.gid}`,
      "--init-groups",
      "--",
      "env",
      "-i",
      ...env,
      "git",
      ...READ_ONLY_CREDENTIALS,
      ...args,
    ],
    {
      cwd: "/",
      timeoutMs: options.timeoutMs ?? FETCH_TIMEOUT_MS,
      ...(options.okCodes ? { okCodes: options.okCodes } : {}),
    },
  );
}

/** A git call whose failure is a warning: the reason (git's last line), or undefined when it worked. */
export async function tryGitAs(
  ctx: Pick<BuildContext, "log">,
  who: Person,
  args: string[],
  options: GitOptions = {},
): Promise<string | undefined> {
  try {
    await gitAs(ctx, who, args, options);
    return undefined;
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    const said = error.stderr.trim().split("\n").filter(Boolean).at(-1);
    return error.exitCode === null
      ? `git ${args[0]} took longer than ${Math.round((options.timeoutMs ?? FETCH_TIMEOUT_MS) / 1000)} s`
      : (said ?? `git ${args[0]} exited with ${error.exitCode}`);
  }
}

/** One line of git's output, or undefined when git says no (exit 1 or 128: no such ref or config). */
export async function gitLine(
  ctx: Pick<BuildContext, "log">,
  who: Person,
  repo: string,
  args: string[],
): Promise<string | undefined> {
  const result = await gitAs(ctx, who, ["-C", repo, ...args], { okCodes: [1, 128] });
  return result.exitCode === 0 ? result.stdout.trim() : undefined;
}
