// What the commands print: lines on stderr, scrubbed of every secret value
// the build has seen; on stdout only what was asked for (--help, --list, --json).
import { redactSecrets } from "../core/secret.ts";

export function say(text: string): void {
  process.stderr.write(`${redactSecrets(text)}\n`);
}

/**
 * Resolves once the text has reached the OS: on a pipe, stdout is written
 * asynchronously, and process.exit() would cut off a large report (--json
 * of a plan runs past the pipe's 64 KiB).
 */
export function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(text, (error) => (error ? reject(error) : resolve())));
}
