#!/usr/bin/env -S npx tsx
// The devvm builder's command line. The only place that catches errors,
// picks the exit code and exits.
// First: refuses an old Node in one line before any dependency loads (and crashes on it).
import "./lib/cli/require-node.ts";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Accounts } from "./lib/machine/accounts.ts";
import { EXIT, parseCli, USAGE } from "./lib/cli/args.ts";
import type { BuildContext } from "./lib/core/context.ts";
import { BuildSession } from "./lib/core/build-session.ts";
import { certificateFiles } from "./lib/sources/download.ts";
import { signalChildren } from "./lib/machine/children.ts";
import { BugError, InputError, LockHeldError, UserError } from "./lib/core/errors.ts";
import { writeFileAtomic } from "./lib/machine/files.ts";
import { loadInputs } from "./lib/inputs/index.ts";
import { requireCompletePins } from "./lib/inputs/required-pins.ts";
import { describeUnresolved, lock } from "./lib/cli/commands/lock.ts";
import { offboardStage } from "./lib/cli/commands/offboard.ts";
import { buildImage } from "./lib/image/build-image.ts";
import { buildManifest, readManifest } from "./lib/output/manifest.ts";
import { builderIdentity, REPORT_VERSION, type Report } from "./lib/output/report.ts";
import { runStages, selectStages, type RunResult } from "./lib/core/runner.ts";
import { findRepoDir } from "./lib/inputs/repo-files.ts";
import { redactSecrets } from "./lib/core/secret.ts";
import { readSettings } from "./lib/inputs/settings.ts";
import { stages } from "./stages/index.ts";
import preflight, { NotRootError, requireRoot } from "./stages/preflight.ts";

const repoDir = findRepoDir(path.dirname(fileURLToPath(import.meta.url)));
// Every line the build prints is scrubbed of the secret values it has seen.
const say = (text: string) => process.stderr.write(`${redactSecrets(text)}\n`);

export async function main(argv: string[]): Promise<number> {
  const cli = parseCli(argv);
  if (cli.help) {
    await writeStdout(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (cli.list) {
    const width = Math.max(...stages.map((s) => s.name.length));
    for (const stage of stages)
      process.stdout.write(
        `${stage.name.padEnd(width)}  ${stage.firstBoot ? "[first boot] " : ""}${stage.description}\n`,
      );
    return EXIT.ok;
  }
  // Builds, plans, lock and offboard all need root (lock runs apt-get update): said before anything is read or written.
  requireRoot(process.getuid?.());
  const settings = readSettings();
  // A Secret in the settings from here on: no child of the build inherits it.
  delete process.env.VAULT_TOKEN;
  const inputsDir = path.resolve(cli.inputs ?? repoDir);
  const root = path.resolve(cli.root ?? "/");
  // The root's system accounts may not be roster users; lock may find packages.txt and pins.json apart (it joins them).
  const inputs = await loadInputs(inputsDir, { root, forLock: cli.command === "lock" });
  const outputDir = path.resolve(cli.output ?? path.join(repoDir, "output"));
  const log = { info: (m: string) => say(`      ${m}`), debug: (m: string) => void (cli.debug && say(`      ${m}`)) };
  if (cli.command === "lock") {
    trustExtraCaCertsInChildren(settings.extraCaCerts, outputDir);
    const { changes, unresolved } = await lock(
      { settings, log, cacheDir: settings.cacheDir ?? path.join(outputDir, "cache"), session: new BuildSession() },
      inputs,
      { pinsFile: path.join(inputsDir, "pins.json"), updates: cli.update },
    );
    if (unresolved.length > 0) {
      say(describeUnresolved(unresolved));
      return EXIT.stageFailed;
    }
    say(
      changes.length === 0
        ? "pins.json is up to date"
        : `pins.json changed:\n${changes.map((c) => `  ${c}`).join("\n")}`,
    );
    return EXIT.ok;
  }
  if (cli.command === "image") {
    // The build inside needs every hash: said now, not after debootstrap.
    requireCompletePins(
      stages.map((s) => s.name),
      inputs,
      settings,
      { underRoot: false, canSkip: false },
    );
    const record = await buildImage({
      repoDir,
      inputsDir,
      inputs,
      outputDir,
      settings,
      log,
      session: new BuildSession(),
    });
    say(
      `image: ${path.join(outputDir, record.archive.file)}\n  ${record.archive.size} bytes, sha256 ${record.archive.sha256}\n  record: ${path.join(outputDir, "devvm-image.json")}`,
    );
    if (cli.json) await writeStdout(`${JSON.stringify(record, null, 2)}\n`);
    return EXIT.ok;
  }
  // offboard USER: preflight (root, the lock), then that one stage.
  const selected =
    cli.command === "offboard" ? [preflight, offboardStage({ inputs, root }, cli.user!)] : selectStages(stages, cli);
  // Every hash the selected stages need, before any of them (preflight too) runs: exit 2, nothing changed.
  requireCompletePins(
    selected.map((s) => s.name),
    inputs,
    settings,
    { underRoot: root !== "/" },
  );
  // Only a build runs npm; --plan writes nothing, this bundle included.
  if (!cli.plan) trustExtraCaCertsInChildren(settings.extraCaCerts, outputDir);
  const ctx: BuildContext = {
    root,
    inputs,
    settings,
    planOnly: cli.plan,
    strict: cli.strict,
    forImage: cli.forImage,
    repoDir,
    inputsDir,
    accounts: new Accounts(root),
    cacheDir: settings.cacheDir ?? path.join(outputDir, "cache"),
    session: new BuildSession(),
    cleanups: [],
    log,
  };
  const builder = builderIdentity(repoDir);
  say(
    `devvm ${builder.version} (${builder.commit.slice(0, 12)}): ${cli.plan ? "planning" : "building"} ${selected.length} stages on ${root}`,
  );

  let run: RunResult;
  try {
    run = await runStages(ctx, selected, { line: say }, { debug: cli.debug });
  } finally {
    for (const cleanup of ctx.cleanups.reverse()) await cleanup();
  }

  const report: Report = {
    reportVersion: REPORT_VERSION,
    builder,
    mode: cli.plan ? "plan" : "apply",
    root,
    finishedAt: new Date().toISOString(),
    inputs: inputs.hashes,
    stages: run.results,
    outcome: run.failed ? "failed" : run.pending ? "changes-pending" : "ok",
  };
  // Without the lock (preflight failed) another build may be writing output/.
  const lockHeld = run.results[0]?.outcome !== "failed";
  // offboard deletes; it manages nothing the manifest records.
  if (!cli.plan && lockHeld && cli.command === "build") await writeOutput(ctx, outputDir, report, run);
  if (cli.json) await writeStdout(`${redactSecrets(JSON.stringify(report, null, 2))}\n`);

  if (run.failure instanceof LockHeldError) return EXIT.buildRunning;
  if (run.failure instanceof NotRootError) return EXIT.notRoot;
  if (run.failed) return EXIT.stageFailed;
  return run.pending ? EXIT.changesPending : EXIT.ok;
}

/**
 * Resolves once the text has reached the OS: on a pipe, stdout is written
 * asynchronously, and process.exit() would cut off a large report (--json
 * of a plan runs past the pipe's 64 KiB).
 */
function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(text, (error) => (error ? reject(error) : resolve())));
}

/** npm and other Node children read extra CAs from NODE_EXTRA_CA_CERTS (one file), not the system store. */
function trustExtraCaCertsInChildren(extraCaCerts: string[], outputDir: string): void {
  if (extraCaCerts.length === 0 || process.env.NODE_EXTRA_CA_CERTS) return;
  const bundle = path.join(outputDir, "extra-ca-certs.pem");
  mkdirSync(outputDir, { recursive: true });
  writeFileSync(
    bundle,
    extraCaCerts
      .flatMap(certificateFiles)
      .map((f) => readFileSync(f, "utf8"))
      .join("\n"),
  );
  process.env.NODE_EXTRA_CA_CERTS = bundle;
}

async function writeOutput(ctx: BuildContext, outputDir: string, report: Report, run: RunResult): Promise<void> {
  mkdirSync(outputDir, { recursive: true });
  const manifestFile = path.join(outputDir, "manifest.json");
  const manifest = await buildManifest(ctx, run.managed, run.inventory, await readManifest(manifestFile));
  const owner = { mode: 0o644, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  await writeFileAtomic(manifestFile, `${redactSecrets(JSON.stringify(manifest, null, 2))}\n`, owner);
  await writeFileAtomic(
    path.join(outputDir, "report.json"),
    `${redactSecrets(JSON.stringify(report, null, 2))}\n`,
    owner,
  );
}

function exitCodeOf(error: unknown, debug: boolean): number {
  if (error instanceof NotRootError) {
    say(`error: ${error.message}`);
    return EXIT.notRoot;
  }
  if (error instanceof InputError) {
    say(
      `error: the inputs have ${error.problems.length} problem${error.problems.length === 1 ? "" : "s"}; nothing was changed\n${error.message}`,
    );
    return EXIT.badInput;
  }
  if (error instanceof UserError) {
    say(`error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`);
    return EXIT.badInput;
  }
  say(`bug: ${error instanceof Error ? error.message : String(error)}`);
  if (debug || !(error instanceof BugError)) say(error instanceof Error ? (error.stack ?? "") : "");
  return EXIT.bug;
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
    (error: unknown) => process.exit(exitCodeOf(error, debug)),
  );
}
