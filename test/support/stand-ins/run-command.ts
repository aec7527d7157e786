// Runs a host command for the stand-ins and fixtures; a failure shows the
// command, its exit code and the tail of its output (lib's CommandError).
import { execFile } from "node:child_process";
import { CommandError } from "../../../lib/core/errors.ts";

export interface CommandOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export function runCommand(
  command: string,
  args: string[],
  options: CommandOptions = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? 10 * 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        const code = typeof error.code === "number" ? error.code : null;
        reject(new CommandError([command, ...args].join(" "), code, `${stderr}${stdout}` || error.message));
      },
    );
  });
}
