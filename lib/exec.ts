// Runs a command for a stage. A failure becomes a CommandError that shows
// the command, its exit code and the tail of its stderr, not a stack.
// Secrets never go on a command line (other users can read it in /proc):
// pass them with `input` (stdin) or `env`.
import { $, type ProcessOutput } from "zx";
import type { BuildContext } from "./context.ts";
import { CommandError } from "./errors.ts";

export interface RunOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  cwd?: string;
  /** Accept these exit codes besides 0 (the caller reads `exitCode`). */
  okCodes?: number[];
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(ctx: Pick<BuildContext, "log">, command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const shown = [command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
  ctx.log.debug(`$ ${shown}`);
  const output: ProcessOutput = await $({
    quiet: true,
    nothrow: true,
    env: { ...process.env, ...options.env },
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  })`${command} ${args}`;
  const exitCode = output.exitCode ?? -1;
  ctx.log.debug(output.stdout.trimEnd());
  ctx.log.debug(output.stderr.trimEnd());
  if (exitCode !== 0 && !options.okCodes?.includes(exitCode)) throw new CommandError(shown, output.exitCode, output.stderr || output.stdout);
  return { stdout: output.stdout, stderr: output.stderr, exitCode };
}
