#!/usr/bin/env -S npx tsx
// The devvm builder's command line: a table of commands, each in its own
// module under lib/cli/commands/. The only place that catches errors, picks
// the exit code (lib/cli/exit-code.ts) and exits.
// First: refuses an old Node in one line before any dependency loads (and crashes on it).
import "./lib/cli/require-node.ts";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseCli, USAGE, type CliOptions } from "./lib/cli/args.ts";
import { openCommand, type Command } from "./lib/cli/command.ts";
import { buildCommand } from "./lib/cli/commands/build.ts";
import { imageCommand } from "./lib/cli/commands/image.ts";
import { lockCommand } from "./lib/cli/commands/lock.ts";
import { offboardCommand } from "./lib/cli/commands/offboard.ts";
import { describeError, EXIT, exitCodeOf } from "./lib/cli/exit-code.ts";
import { stageList } from "./lib/cli/stage-list.ts";
import { say, writeStdout } from "./lib/cli/terminal.ts";
import { findRepoDir } from "./lib/inputs/repo-files.ts";
import { signalChildren } from "./lib/machine/children.ts";
import { stages } from "./stages/index.ts";

const COMMANDS: Record<CliOptions["command"], Command> = {
  build: buildCommand,
  lock: lockCommand,
  image: imageCommand,
  offboard: offboardCommand,
};

const repoDir = findRepoDir(path.dirname(fileURLToPath(import.meta.url)));

/** Runs the command the arguments name and returns its exit code; what it throws is caught below. */
export async function main(argv: string[]): Promise<number> {
  const cli = parseCli(argv);
  if (cli.help) {
    await writeStdout(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (cli.list) {
    await writeStdout(stageList(stages));
    return EXIT.ok;
  }
  const command = COMMANDS[cli.command];
  return exitCodeOf(await command.run(await openCommand(command, cli, repoDir)));
}

// Run as a program (tsx build.ts, or the bundle dist/devvm.mjs), not when imported by a test.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const debug = process.argv.includes("--debug");
  // Stopped (Ctrl-C, systemctl stop, a closed terminal): the commands it
  // runs, each in a group of its own, are stopped too; the record of them
  // stays, so the next build makes sure they are gone.
  for (const [signal, number] of [
    ["SIGINT", 2],
    ["SIGTERM", 15],
    ["SIGHUP", 1],
  ] as const) {
    process.once(signal, () => {
      signalChildren("SIGTERM");
      say(`stopped by ${signal}`);
      process.exit(128 + number);
    });
  }
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      for (const line of describeError(error, debug)) say(line);
      process.exit(exitCodeOf({ outcome: "threw", error }));
    },
  );
}
