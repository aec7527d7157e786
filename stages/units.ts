import { accessSync, constants, existsSync, readdirSync } from "node:fs";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import { applyResources, checkResource, managedBy, type FileResource } from "../lib/machine/files.ts";
import { BIN_DIR, NODE_BIN } from "../lib/machine/layout.ts";
import { repoTemplate } from "../lib/inputs/repo-files.ts";
import { memoryCaps } from "../lib/inputs/settings.ts";
import type { Stage } from "../lib/core/stage.ts";
import {
  activeT3ServeInstances,
  activeUnits,
  addPendingRestarts,
  enabledUnits,
  offlineReason,
  readPendingRestarts,
  requireStayedUp,
  systemctl,
  T3_SERVE_TEMPLATE,
  UNIT_DIR,
  verifyUnits,
  writePendingRestarts,
} from "../lib/machine/systemd.ts";
import { DISPATCH_BIN, DISPATCH_UNIT } from "./service-helpers.ts";

// Who installs each program a unit runs, in pipeline order: a missing one is
// that stage's failure (or it has not run yet), never a fault of the units.
const INSTALLED_BY: Array<[stage: string, programs: string[]]> = [
  ["node", [NODE_BIN]],
  ["t3", [`${BIN_DIR}/t3`]],
  [
    "service-helpers",
    [
      DISPATCH_BIN,
      `${BIN_DIR}/t3-state-backup`,
      `${BIN_DIR}/t3-watchdog`,
      `${BIN_DIR}/tmux-persist`,
      `${BIN_DIR}/claude-auth-sync`,
    ],
  ],
];

const SOURCE_DIR = "service/units";
// Enabled and kept running. The timers' services are oneshots that are never
// started or restarted here: that would run them now (the t3 pin enforcer
// would update t3 outside its window). Timers are started with a plain
// `start` after `enable`; devvm-t3-pin.timer is not Persistent= (see the
// unit), so starting it cannot fire a missed run.
const TIMERS = [
  "devvm-t3-pin.timer",
  "t3-state-backup.timer",
  "devvm-reconcile.timer",
  "tmux-persist-save.timer",
  "t3-watchdog.timer",
  "t3-migrate-idle.timer",
];
// Enabled for the next boot and never started here: tmux-persist's restore,
// run on a running box, would bring back sessions closed since the last save.
const AT_BOOT = ["tmux-persist-restore.service"];

function unitFiles(ctx: BuildContext): FileResource[] {
  const names = readdirSync(path.join(ctx.repoDir, "files", SOURCE_DIR)).sort();
  // verify rejects a unit whose command is missing; t3-dispatch's waits for its binary.
  const ready = names.filter((name) => name !== DISPATCH_UNIT || existsSync(hostPath(ctx, DISPATCH_BIN)));
  // t3-serve@.service carries the user's memory cap (stage containment caps the user's slice alike).
  const values = { USER_MEMORY_MAX: memoryCaps(ctx.settings).userMemoryMax };
  return ready.map((name) => ({
    kind: "file",
    path: `${UNIT_DIR}/${name}`,
    mode: 0o644,
    content: repoTemplate(ctx, `${SOURCE_DIR}/${name}`, values),
  }));
}

const unitName = (file: FileResource) => path.basename(file.path);

export interface UnitProgram {
  units: string[];
  /** Behind `/usr/bin/env VAR=... PROGRAM`: verify and systemd check only env, so a missing one shows only when it starts. */
  wrapped: boolean;
}

/** The programs the units run (ExecStart=), each with the units that run it. */
export function unitPrograms(files: Array<{ path: string; content: string | Buffer }>): Map<string, UnitProgram> {
  const programs = new Map<string, UnitProgram>();
  for (const file of files) {
    for (const [, command] of String(file.content).matchAll(/^ExecStart=[-@:+!]*(.+)$/gm)) {
      const words = command!.trim().split(/\s+/);
      const wrapped = words[0] === "/usr/bin/env";
      const program = wrapped ? words.slice(1).find((w) => !w.includes("=") && !w.startsWith("-")) : words[0];
      if (!program?.startsWith("/")) continue;
      const known = programs.get(program);
      programs.set(program, {
        units: [...(known?.units ?? []), path.basename(file.path)],
        wrapped: known ? known.wrapped && wrapped : wrapped,
      });
    }
  }
  return programs;
}

/**
 * Before verify (which would only say "Command ... is not executable" and
 * blame the units): fails naming each missing program and the stage that
 * installs it. A missing program behind env (t3, for t3-serve@) does not
 * stop the units, which start no instance; it is a warning, returned.
 */
export function requireUnitPrograms(
  files: Array<{ path: string; content: string | Buffer }>,
  isExecutable: (machinePath: string) => boolean,
): string[] {
  const missing = [...unitPrograms(files)].filter(([program]) => !isExecutable(program));
  const describe = ([program, { units }]: [string, UnitProgram]) =>
    `${path.basename(program)} is not installed: ${program}, which ${units.join(" and ")} run${units.length === 1 ? "s" : ""}, is missing`;
  const fatal = missing.filter(([, { wrapped }]) => !wrapped);
  if (fatal.length === 0)
    return missing.map(
      (m) => `warning: ${describe(m)}; ${m[1].units.join(" and ")} cannot start until ${installerHint(m[0])}`,
    );
  const stagesToRun = INSTALLED_BY.filter(([, programs]) =>
    missing.some(([program]) => programs.includes(program)),
  ).map(([stage]) => stage);
  const run =
    stagesToRun.length > 0
      ? `run the ${stagesToRun.join(", ")} stage${stagesToRun.length === 1 ? "" : "s"} first (e.g. \`build.ts --from ${stagesToRun[0]}\`), or fix why it failed`
      : "install what is missing";
  throw new UserError(`${missing.map(describe).join("\n")}\nno unit was installed`, `the unit files are fine: ${run}`);
}

function installerHint(program: string): string {
  const stage = INSTALLED_BY.find(([, programs]) => programs.includes(program))?.[0];
  return stage ? `the ${stage} stage installs it` : "it is installed";
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** What runs all the time: t3-dispatch (once built) and the timers. */
const runningUnits = (files: FileResource[]) =>
  files.map(unitName).filter((name) => name === DISPATCH_UNIT || TIMERS.includes(name));
/** What is enabled: the running units and those that run at boot only. */
const enabledHere = (files: FileResource[]) =>
  files.map(unitName).filter((name) => runningUnits(files).includes(name) || AT_BOOT.includes(name));

interface UnitState {
  changed: FileResource[];
  fileChanges: Change[];
  toEnable: string[];
  toStart: string[];
  toRestart: string[];
}

async function unitState(ctx: BuildContext, files: FileResource[]): Promise<UnitState> {
  const changed: FileResource[] = [];
  const fileChanges: Change[] = [];
  for (const file of files) {
    const changes = await checkResource(ctx, file);
    if (changes.length > 0) changed.push(file);
    fileChanges.push(...changes);
  }
  const running = runningUnits(files);
  const wanted = enabledHere(files);
  const enabled = await enabledUnits(ctx, wanted);
  const toEnable = wanted.filter((unit) => !enabled.has(unit));
  if (offlineReason(ctx)) return { changed, fileChanges, toEnable, toStart: [], toRestart: [] };
  const active = await activeUnits(ctx, running);
  const toStart = running.filter((unit) => !active.has(unit));
  // A unit that changes now, or whose restart an earlier build left due (its binary changed).
  const due = [...(await readPendingRestarts(ctx)), ...changed.map(unitName).filter((n) => running.includes(n))];
  const toRestart = [...new Set(due)].filter((unit) => running.includes(unit) && !toStart.includes(unit));
  return { changed, fileChanges, toEnable, toStart, toRestart };
}

export default {
  name: "units",
  firstBoot: "it starts t3-dispatch and the timers, which need systemd running",
  description:
    "Installs the t3 units and timers in /etc/systemd/system (verified first); enables and starts t3-dispatch and the timers, enables tmux-persist's restore for boot",
  async check(ctx) {
    const files = unitFiles(ctx);
    const state = await unitState(ctx, files);
    const offline = offlineReason(ctx);
    if (offline) ctx.log.info(offline);
    if (!files.some((f) => unitName(f) === DISPATCH_UNIT))
      warn(ctx, `${DISPATCH_UNIT} is left out until ${DISPATCH_BIN} is built`);
    const changes: Change[] = [
      ...state.fileChanges,
      ...state.toEnable.map((u): Change => ({ kind: "action", description: `enable ${u}` })),
      ...state.toStart.map((u): Change => ({ kind: "action", description: `start ${u}` })),
      ...state.toRestart.map((u): Change => ({ kind: "action", description: `restart ${u}` })),
    ];
    return { changes, managed: managedBy(files), plan: { files, state } };
  },
  async apply(ctx, { plan: { files, state } }) {
    if (state.changed.length > 0) {
      // verify, like systemd, looks for the programs on this machine; under --root they are the image's (and t3 is skipped there).
      if (!underRoot(ctx)) for (const warning of requireUnitPrograms(files, isExecutable)) ctx.log.info(warning);
      // The whole set, under the real names, before any of it is installed.
      await verifyUnits(
        ctx,
        files.map((f) => ({ name: unitName(f), content: f.content })),
      );
      // Recorded before the units are replaced: a build that stops after this still restarts them.
      // A new t3-serve@ template reaches each running instance at its next idle restart (stage instances).
      const template =
        state.changed.some((f) => f.path === T3_SERVE_TEMPLATE) && !offlineReason(ctx)
          ? await activeT3ServeInstances(ctx)
          : [];
      await addPendingRestarts(ctx, [...state.toRestart, ...template]);
    }
    const changes = await applyResources(ctx, state.changed);
    const offline = offlineReason(ctx);
    if (state.changed.length > 0 && !offline) await systemctl(ctx, ["daemon-reload"]);
    if (state.toEnable.length > 0) await systemctl(ctx, ["enable", ...state.toEnable]);
    changes.push(...state.toEnable.map((u): Change => ({ kind: "action", description: `enable ${u}` })));
    if (offline) return changes;
    if (state.toStart.length > 0) await systemctl(ctx, ["start", ...state.toStart]);
    changes.push(...state.toStart.map((u): Change => ({ kind: "action", description: `start ${u}` })));
    for (const unit of state.toRestart) {
      await systemctl(ctx, ["restart", unit]);
      changes.push({ kind: "action", description: `restart ${unit}` });
    }
    await requireStayedUp(ctx, [...state.toStart, ...state.toRestart]);
    // Everything due here is done now (a unit started just now runs its new
    // version); restarts of other stages' units (users: t3-serve@USER) stay due.
    const running = runningUnits(files);
    await writePendingRestarts(
      ctx,
      (await readPendingRestarts(ctx)).filter((unit) => !running.includes(unit)),
    );
    return changes;
  },
} satisfies Stage<{ files: FileResource[]; state: UnitState }>;
