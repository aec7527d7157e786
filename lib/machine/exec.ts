// Runs a command for a stage. A failure becomes a CommandError that shows
// the command, its exit code and the tail of its stderr, not a stack.
// Secrets never go on a command line (other users can read it in /proc):
// pass them with `input` (stdin) or `env`.
// Each command leads a process group of its own, recorded (lib/machine/children.ts)
// so that nothing it started outlives a killed build; a timeout ends the
// whole group, not just the command.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { trackChild, untrackChild } from "./children.ts";
import type { BuildContext } from "../core/context.ts";
import { CommandError } from "../core/errors.ts";
import { startHeartbeat } from "../core/progress.ts";

export interface RunOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  cwd?: string;
  /** Accept these exit codes besides 0 (the caller reads `exitCode`). */
  okCodes?: number[];
  timeoutMs?: number;
  /** Each line of stdout as it arrives (for progress); stdout is still returned whole. */
  onStdoutLine?: (line: string) => void;
  /** Opens fd 3 for the command and passes each line written to it (apt's `-o APT::Status-Fd=3`). */
  onStatusLine?: (line: string) => void;
  /** Says the command runs: this label now, its elapsed time every `everyMs` (default 10 s; 0: never), and how long it took. */
  heartbeat?: { label: string; everyMs?: number; quietDone?: boolean };
  /** Ends the command's process group (TERM, then KILL) when aborted: background work at the build's end. */
  signal?: AbortSignal | undefined;
  /**
   * Runs it at the lowest CPU priority (nice 19, it and all it starts): work
   * in the background yields the CPU to the stage running (dpkg, which keeps
   * one core busy), and takes what is idle.
   */
  yieldCpu?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(
  ctx: Pick<BuildContext, "log">,
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const shown = [command, ...args]
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(" ");
  ctx.log.debug(`$ ${shown}`);
  const heartbeat =
    options.heartbeat &&
    startHeartbeat(ctx.log, options.heartbeat.label, options.heartbeat.everyMs, {
      quietDone: !!options.heartbeat.quietDone,
    });
  let result: RunResult;
  try {
    result = await spawnCommand(command, args, options);
  } catch (error) {
    heartbeat?.stop("failed");
    throw error;
  }
  ctx.log.debug(result.stdout.trimEnd());
  ctx.log.debug(result.stderr.trimEnd());
  const ok = result.exitCode === 0 || !!options.okCodes?.includes(result.exitCode);
  heartbeat?.stop(ok ? "done" : "failed");
  if (!ok)
    throw new CommandError(shown, result.exitCode === -1 ? null : result.exitCode, result.stderr || result.stdout);
  return result;
}

const GRACE_MS = 5_000;

/** Runs the command in a process group of its own; stdout (and fd 3) line by line to the callbacks while it runs. */
function spawnCommand(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [program, argv] = options.yieldCpu ? ["nice", ["-n", "19", command, ...args]] : [command, args];
    const child = spawn(program, argv, {
      env: { ...process.env, ...options.env },
      ...(options.cwd ? { cwd: options.cwd } : {}),
      // No stdin unless given: a command that reads one (a prompt) gets end of file, never a hang.
      stdio: [
        options.input === undefined ? "ignore" : "pipe",
        "pipe",
        "pipe",
        ...(options.onStatusLine ? (["pipe"] as const) : []),
      ],
      detached: true,
    });
    trackChild(child.pid);
    // Piped, as asked above: never null.
    const out = child.stdout!;
    const err = child.stderr!;
    let killer: NodeJS.Timeout | undefined;
    const end = () => {
      killGroup(child.pid, "SIGTERM");
      killer ??= setTimeout(() => killGroup(child.pid, "SIGKILL"), GRACE_MS);
    };
    const timer = options.timeoutMs ? setTimeout(end, options.timeoutMs) : undefined;
    if (options.signal?.aborted) end();
    options.signal?.addEventListener("abort", end, { once: true });
    let stdout = "";
    let stderr = "";
    out.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    err.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const streams: Array<Promise<void>> = [];
    if (options.onStdoutLine) streams.push(eachLine(out, options.onStdoutLine));
    if (options.onStatusLine) streams.push(eachLine(child.stdio[3] as Readable, options.onStatusLine));
    if (options.input !== undefined) {
      // A command that exits without reading its input is judged by its exit code, not by EPIPE.
      child.stdin?.on("error", () => {});
      child.stdin?.end(options.input);
    }
    child.on("error", (error: NodeJS.ErrnoException) => {
      options.signal?.removeEventListener("abort", end);
      clearTimeout(timer);
      untrackChild(child.pid);
      // A missing program fails like it does in a shell: exit 127, judged by the caller.
      if (error.code === "ENOENT") resolve({ stdout: "", stderr: `${command}: command not found`, exitCode: 127 });
      else reject(error);
    });
    // A daemon started by the command (a package's postinst) may keep a pipe
    // open; its output is not the command's, so the pipes close soon after the exit.
    let orphanedPipes: NodeJS.Timeout | undefined;
    child.on("exit", () => {
      orphanedPipes = setTimeout(() => child.stdio.forEach((stream) => stream?.destroy()), 5_000);
      orphanedPipes.unref();
    });
    child.on("close", (code, signal) => {
      options.signal?.removeEventListener("abort", end);
      clearTimeout(timer);
      clearTimeout(killer);
      clearTimeout(orphanedPipes);
      untrackChild(child.pid);
      // Every line read before the result: the last progress line is not lost.
      void Promise.all(streams).then(() =>
        resolve({ stdout, stderr: signal && !stderr ? `killed by ${signal}` : stderr, exitCode: code ?? -1 }),
      );
    });
  });
}

function eachLine(stream: Readable, onLine: (line: string) => void): Promise<void> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  lines.on("line", (line) => {
    // A progress line that cannot be shown must not break the command (apt half way).
    try {
      onLine(line);
    } catch {
      // the next line may show
    }
  });
  return new Promise((resolve) => {
    lines.once("close", resolve);
    stream.once("close", resolve);
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * setpriv's arguments that run what follows as the account (with its own
 * groups) in a bare environment holding only `env`: never the builder's,
 * which may hold a Vault token.
 */
export function setprivAs(account: { uid: number; gid: number }, env: Record<string, string>): string[] {
  const bare = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  return [`--reuid=${account.uid}`, `--regid=${account.gid}`, "--init-groups", "--", "env", "-i", ...bare];
}
