// Runs stages for a command (build, offboard): every pin they need checked
// first, then the runner, then the report (and, for a build, the manifest).
import { mkdirSync } from "node:fs";
import path from "node:path";
import { holdsBuildLock } from "../core/build-lock.ts";
import { hostPath, type BuildContext } from "../core/context.ts";
import { runStages, type RunResult } from "../core/runner.ts";
import { redactSecrets } from "../core/secret.ts";
import type { Stage } from "../core/stage.ts";
import { requireCompletePins } from "../inputs/required-pins.ts";
import { writeFileAtomic } from "../machine/files.ts";
import { Accounts } from "../machine/accounts.ts";
import { machineRelease } from "../machine/releases.ts";
import { buildManifest, readManifest } from "../output/manifest.ts";
import { builderIdentity, REPORT_VERSION, type Report } from "../output/report.ts";
import { BUILD_LOCK_PATH } from "../../stages/preflight.ts";
import type { CommandContext } from "./command.ts";
import type { CommandOutcome } from "./exit-code.ts";
import { trustExtraCaCertsInChildren } from "./extra-ca-certs.ts";
import { say, writeStdout } from "./terminal.ts";

export async function runPipeline(
  c: CommandContext,
  selected: Stage[],
  options: { writesOutput: boolean },
): Promise<CommandOutcome> {
  const { cli, root, inputs, settings, outputDir } = c;
  // Every hash the selected stages need, before any of them (preflight too) runs: exit 2, nothing changed.
  requireCompletePins(selected, inputs, settings, { underRoot: root !== "/" });
  // Only a build runs npm; --plan writes nothing, this bundle included.
  if (!cli.plan) trustExtraCaCertsInChildren(settings.extraCaCerts, outputDir);
  const ctx: BuildContext = {
    root,
    inputs,
    settings,
    // An unsupported release is refused here, before any stage, with the message preflight would give.
    release: machineRelease(root),
    planOnly: cli.plan,
    strict: cli.strict,
    ...(cli.t3BackTo !== undefined ? { t3BackTo: cli.t3BackTo } : {}),
    forImage: cli.forImage,
    repoDir: c.repoDir,
    inputsDir: c.inputsDir,
    accounts: new Accounts(root),
    cacheDir: c.cacheDir,
    cleanups: [],
    log: c.log,
    session: c.session,
  };
  const builder = builderIdentity(c.repoDir);
  say(
    `devvm ${builder.version} (${builder.commit.slice(0, 12)}): ${cli.plan ? "planning" : "building"} ${selected.length} stages on ${root}`,
  );

  let run: RunResult;
  // Asked before the cleanups release it: without it (preflight failed), another build may be writing output/.
  let heldBuildLock: boolean;
  try {
    run = await runStages(ctx, selected, { line: say }, { debug: cli.debug });
    heldBuildLock = holdsBuildLock(hostPath(ctx, BUILD_LOCK_PATH));
  } finally {
    for (const cleanup of ctx.cleanups.reverse()) await cleanup();
  }

  const outcome = run.failed ? "failed" : run.pending ? "changes-pending" : "ok";
  const report: Report = {
    reportVersion: REPORT_VERSION,
    builder,
    mode: cli.plan ? "plan" : "apply",
    root,
    finishedAt: new Date().toISOString(),
    inputs: inputs.hashes,
    stages: run.results,
    outcome,
  };
  if (!cli.plan && heldBuildLock && options.writesOutput) await writeOutput(ctx, outputDir, report, run);
  if (cli.json) await writeStdout(`${redactSecrets(JSON.stringify(report, null, 2))}\n`);
  return outcome === "failed" ? { outcome, error: run.failure } : { outcome };
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
