// Runs a command for a stage. A failure becomes a CommandError that shows
// the command, its exit code and the tail of its stderr, not a stack.
// Secrets never go on a command line (other users can read it in /proc):
// pass them with `input` (stdin) or `env`.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { $, type ProcessOutput } from "zx";
import type { BuildContext } from "./context.ts";
import { CommandError } from "./errors.ts";
import { startHeartbeat } from "./progress.ts";

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
  heartbeat?: { label: string; everyMs?: number };
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(ctx: Pick<BuildContext, "log">, command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const shown = [command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
  ctx.log.debug(`$ ${shown}`);
  const heartbeat = options.heartbeat && startHeartbeat(ctx.log, options.heartbeat.label, options.heartbeat.everyMs);
  let result: RunResult;
  try {
    result = options.onStdoutLine || options.onStatusLine ? await spawnStreaming(command, args, options) : await runQuiet(command, args, options);
  } catch (error) {
    heartbeat?.stop("failed");
    throw error;
  }
  ctx.log.debug(result.stdout.trimEnd());
  ctx.log.debug(result.stderr.trimEnd());
  const ok = result.exitCode === 0 || !!options.okCodes?.includes(result.exitCode);
  heartbeat?.stop(ok ? "done" : "failed");
  if (!ok) throw new CommandError(shown, result.exitCode === -1 ? null : result.exitCode, result.stderr || result.stdout);
  return result;
}

async function runQuiet(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  const output: ProcessOutput = await $({
    quiet: true,
    nothrow: true,
    env: { ...process.env, ...options.env },
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  })`${command} ${args}`;
  return { stdout: output.stdout, stderr: output.stderr, exitCode: output.exitCode ?? -1 };
}

/** Like runQuiet, but hands over stdout (and fd 3) line by line while the command runs. */
function spawnStreaming(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...options.env },
      ...(options.cwd ? { cwd: options.cwd } : {}),
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe", ...(options.onStatusLine ? (["pipe"] as const) : [])],
    });
    // Piped, as asked above: never null.
    const out = child.stdout!;
    const err = child.stderr!;
    const timer = options.timeoutMs ? setTimeout(() => child.kill("SIGTERM"), options.timeoutMs) : undefined;
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
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // A daemon started by the command (a package's postinst) may keep a pipe
    // open; its output is not the command's, so the pipes close soon after the exit.
    let orphanedPipes: NodeJS.Timeout | undefined;
    child.on("exit", () => {
      orphanedPipes = setTimeout(() => child.stdio.forEach((stream) => stream?.destroy()), 5_000);
      orphanedPipes.unref();
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(orphanedPipes);
      // Every line read before the result: the last progress line is not lost.
      void Promise.all(streams).then(() => resolve({ stdout, stderr: signal && !stderr ? `killed by ${signal}` : stderr, exitCode: code ?? -1 }));
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
