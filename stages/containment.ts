// One user cannot take the box down (docs/devvm.md "Containment"): caps and
// weights for every user's slice, the system's services, every tmux pane and
// Docker; earlyoom as the last line. t3-serve@.service carries its own cap
// (stage units, from the same setting as the users' slices).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, warn } from "../lib/core/context.ts";
import { UserError } from "../lib/core/errors.ts";
import type { Stage } from "../lib/core/stage.ts";
import { repoTemplate } from "../lib/inputs/repo-files.ts";
import { memoryCaps, settingVariables } from "../lib/inputs/settings.ts";
import { DOCKER_DAEMON_JSON, mergeCgroupParent } from "../lib/machine/docker-daemon-json.ts";
import { applyResources, checkResource, managedBy, type FileResource } from "../lib/machine/files.ts";
import { foreignDropIns, keysSet } from "../lib/machine/drop-ins.ts";
import {
  runningUserManagers,
  unitsNeedingReload,
  userManagerNeedsReload,
  userSystemctl,
  type UserManager,
} from "../lib/machine/systemd-managers.ts";
import {
  activeUnits,
  enabledUnits,
  offlineReason,
  requireStayedUp,
  systemctl,
  T3_SERVE_TEMPLATE,
} from "../lib/machine/systemd.ts";

export const USER_SLICE_DROP_IN = "/etc/systemd/system/user-.slice.d/50-devvm-resource.conf";
export const SYSTEM_SLICE_DROP_IN = "/etc/systemd/system/system.slice.d/50-devvm-priority.conf";
export const PANE_SCOPE_DROP_IN = "/etc/systemd/user/scope.d/50-devvm-pane-cap.conf";
export const DOCKER_SLICE = "/etc/systemd/system/docker.slice";
export const EARLYOOM_DEFAULTS = "/etc/default/earlyoom";
const EARLYOOM = "earlyoom.service";
const EARLYOOM_BINARY = "/usr/bin/earlyoom";
const OOMD = ["systemd-oomd.service", "systemd-oomd.socket"];
const DOCKER = "docker.service";
// Where packages put their units and programs (Debian 12 still ships some in /lib).
const PACKAGE_UNIT_DIRS = ["/usr/lib/systemd/system", "/lib/systemd/system"];
const DOCKERD = ["/usr/bin/dockerd", "/usr/sbin/dockerd"];
// What t3-serve@.service sets for containment (files/service/units/t3-serve@.service).
const T3_CONTAINMENT_KEYS = ["MemoryAccounting", "MemoryHigh", "MemoryMax", "MemorySwapMax", "OOMPolicy"];
/** The settings an admin changes the caps with, for messages. */
const CAP_SETTINGS = [settingVariables.userMemoryMax, settingVariables.paneMemoryMax, settingVariables.dockerMemoryMax];

/** What apply does besides writing the files check found changed. */
interface Plan {
  files: FileResource[];
  /** The system's manager reloads (a system drop-in changed, or systemd says one is not loaded). */
  reloadSystem: boolean;
  /** Each running user manager that reloads: its open panes take the pane cap at once. */
  reloadUsers: UserManager[];
  earlyoom: { enable: boolean; start: boolean; restart: boolean };
  oomd: { disable: string[]; stop: string[] };
  restartDocker: boolean;
}

const installed = (ctx: BuildContext, unit: string) =>
  PACKAGE_UNIT_DIRS.some((dir) => existsSync(hostPath(ctx, `${dir}/${unit}`)));

function dropIns(ctx: BuildContext, dockerInstalled: boolean): FileResource[] {
  const caps = memoryCaps(ctx.settings);
  const values = {
    USER_MEMORY_MAX: caps.userMemoryMax,
    PANE_MEMORY_MAX: caps.paneMemoryMax,
    DOCKER_MEMORY_MAX: caps.dockerMemoryMax,
  };
  const file = (path: string, source: string): FileResource => ({
    kind: "file",
    path,
    mode: 0o644,
    content: repoTemplate(ctx, `containment/${source}`, values),
  });
  return [
    file(USER_SLICE_DROP_IN, "user-slice.conf"),
    file(SYSTEM_SLICE_DROP_IN, "system-slice.conf"),
    file(PANE_SCOPE_DROP_IN, "pane-scope.conf"),
    ...(dockerInstalled ? [file(DOCKER_SLICE, "docker.slice")] : []),
    file(EARLYOOM_DEFAULTS, "earlyoom"),
  ];
}

/** daemon.json with "cgroup-parent" merged in; a file that is not a JSON object is named and left alone. */
function daemonJson(ctx: BuildContext): FileResource | undefined {
  const file = hostPath(ctx, DOCKER_DAEMON_JSON);
  const merged = mergeCgroupParent(existsSync(file) ? readFileSync(file, "utf8") : undefined);
  if ("content" in merged) return { kind: "file", path: DOCKER_DAEMON_JSON, mode: 0o644, content: merged.content };
  warn(
    ctx,
    `${DOCKER_DAEMON_JSON} is left alone: ${merged.problem}; Docker's containers stay outside docker.slice until it is fixed (dockerd refuses it too), and the next build adds "cgroup-parent": "docker.slice"`,
  );
  return undefined;
}

/** earlyoom's arguments as /etc/default/earlyoom gives them: the unit splits $EARLYOOM_ARGS at spaces. */
export function earlyoomArguments(defaults: string): string[] {
  const line = /^EARLYOOM_ARGS="([^"]*)"$/m.exec(defaults);
  if (!line) throw new Error(`files/containment/earlyoom: no EARLYOOM_ARGS="..." line`);
  return line[1]!.split(" ").filter(Boolean);
}

/** Whether the running earlyoom runs with exactly these arguments (/proc/PID/cmdline). */
async function earlyoomRunsWith(ctx: BuildContext, args: string[]): Promise<boolean> {
  const pid = (await systemctl(ctx, ["show", "--property=MainPID", "--value", EARLYOOM])).stdout.trim();
  if (!/^[1-9]\d*$/.test(pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return false; // it ended since systemctl answered
  }
  return JSON.stringify(cmdline.split("\0").slice(0, -1)) === JSON.stringify([EARLYOOM_BINARY, ...args]);
}

/**
 * Another drop-in that sets what the builder's files set (a box taken over
 * may keep an old cap under another name): named, so nothing is left
 * doubled unseen. t3-serve@.service has its caps in the unit (stage units),
 * which any drop-in of its own overrides.
 */
function warnForeignDropIns(ctx: BuildContext, files: FileResource[]): void {
  const places = [
    ...files
      .filter((f) => f.path.endsWith(".conf"))
      .map((f) => ({
        dir: path.dirname(f.path),
        ours: path.basename(f.path),
        keys: keysSet(String(f.content)),
        what: f.path,
      })),
    { dir: `${T3_SERVE_TEMPLATE}.d`, ours: undefined, keys: T3_CONTAINMENT_KEYS, what: T3_SERVE_TEMPLATE },
  ];
  for (const place of places) {
    for (const other of foreignDropIns(ctx, place.dir, place.ours, place.keys)) {
      warn(
        ctx,
        `${other.path} also sets ${other.keys.join(", ")} and ${other.wins ? "overrides" : "is overridden by"} the builder's ${place.what}: remove it; the caps are set with ${CAP_SETTINGS.join(", ")} (docs/cli.md)`,
      );
    }
  }
}

async function plan(ctx: BuildContext): Promise<{ changes: Change[]; plan: Plan; all: FileResource[] }> {
  // Under --plan on a box the apt stage has not reached yet (a takeover, a fresh box), earlyoom is what
  // that stage would install: planned as enabled and started, not a failure.
  if (!installed(ctx, EARLYOOM) && !ctx.planOnly)
    throw new UserError(
      `earlyoom is not installed (no ${EARLYOOM} in ${PACKAGE_UNIT_DIRS.join(" or ")})`,
      "the apt stage installs it from packages.txt: run `build.ts --from apt`, or fix why it failed",
    );
  const docker = DOCKERD.some((program) => existsSync(hostPath(ctx, program)));
  const json = docker ? daemonJson(ctx) : undefined;
  const all = [...dropIns(ctx, docker), ...(json ? [json] : [])];
  warnForeignDropIns(ctx, all);
  const changes: Change[] = [];
  const changed: FileResource[] = [];
  for (const file of all) {
    const found = await checkResource(ctx, file);
    if (found.length > 0) changed.push(file);
    changes.push(...found);
  }
  const isChanged = (machinePath: string) => changed.some((f) => f.path === machinePath);
  const systemFiles = [USER_SLICE_DROP_IN, SYSTEM_SLICE_DROP_IN, DOCKER_SLICE];
  const oomdHere = OOMD.filter((unit) => installed(ctx, unit));
  const oomdEnabled = await enabledUnits(ctx, oomdHere);
  const earlyoomEnabled = (await enabledUnits(ctx, [EARLYOOM])).has(EARLYOOM);
  const plan: Plan = {
    files: changed,
    reloadSystem: false,
    reloadUsers: [],
    earlyoom: { enable: !earlyoomEnabled, start: false, restart: false },
    oomd: { disable: oomdHere.filter((u) => oomdEnabled.has(u)), stop: [] },
    restartDocker: false,
  };
  const offline = offlineReason(ctx);
  if (offline) ctx.log.info(offline);
  else {
    const userSlices = (await runningUserManagers(ctx)).map((m) => ({ ...m, slice: `user-${m.uid}.slice` }));
    plan.reloadSystem =
      systemFiles.some(isChanged) ||
      (
        await unitsNeedingReload(ctx, [
          "system.slice",
          ...(docker ? ["docker.slice"] : []),
          ...userSlices.map((m) => m.slice),
        ])
      ).length > 0;
    for (const manager of userSlices)
      if (isChanged(PANE_SCOPE_DROP_IN) || (await userManagerNeedsReload(ctx, manager))) plan.reloadUsers.push(manager);
    const active = await activeUnits(ctx, [EARLYOOM, ...oomdHere, ...(docker ? [DOCKER] : [])]);
    plan.oomd.stop = oomdHere.filter((u) => active.has(u));
    plan.earlyoom.start = !active.has(EARLYOOM);
    plan.earlyoom.restart =
      active.has(EARLYOOM) &&
      (isChanged(EARLYOOM_DEFAULTS) ||
        !(await earlyoomRunsWith(
          ctx,
          earlyoomArguments(String(all.find((f) => f.path === EARLYOOM_DEFAULTS)!.content)),
        )));
    // dockerd reads daemon.json only when it starts; its containers stop with it (unless live-restore).
    plan.restartDocker = json !== undefined && isChanged(DOCKER_DAEMON_JSON) && active.has(DOCKER);
  }
  changes.push(...actions(plan).map((description): Change => ({ kind: "action", description })));
  return { changes, plan, all };
}

/** What the plan does besides files, as --plan and the report say it. */
function actions(plan: Plan): string[] {
  return [
    ...(plan.reloadSystem ? ["daemon-reload (the slices take their caps and weights)"] : []),
    ...plan.reloadUsers.map(
      (m) => `daemon-reload ${m.user}'s systemd manager (${m.user}'s open panes take the pane cap)`,
    ),
    ...(plan.earlyoom.enable ? [`enable ${EARLYOOM}`] : []),
    ...(plan.earlyoom.start ? [`start ${EARLYOOM}`] : []),
    ...(plan.earlyoom.restart ? [`restart ${EARLYOOM} (with the arguments of ${EARLYOOM_DEFAULTS})`] : []),
    ...plan.oomd.stop.map((unit) => `stop ${unit}`),
    ...plan.oomd.disable.map((unit) => `disable ${unit}`),
    ...(plan.restartDocker ? [`restart ${DOCKER} (it reads ${DOCKER_DAEMON_JSON} only when it starts)`] : []),
  ];
}

export default {
  name: "containment",
  description:
    "Caps memory and weighs CPU and IO per user slice, per tmux pane and for Docker, gives the system's services priority, and runs earlyoom as the last line (systemd-oomd off)",
  async check(ctx) {
    const { changes, plan: found, all } = await plan(ctx);
    return { changes, managed: managedBy(all), plan: found };
  },
  async apply(ctx, { plan }) {
    const changes = await applyResources(ctx, plan.files);
    if (plan.reloadSystem) await systemctl(ctx, ["daemon-reload"]);
    const reloaded: UserManager[] = [];
    for (const manager of plan.reloadUsers) {
      // One user's manager that does not answer must not keep the others' panes uncapped.
      const reload = await userSystemctl(ctx, manager, ["daemon-reload"], [1]);
      if (reload.exitCode === 0) reloaded.push(manager);
      else
        warn(
          ctx,
          `${manager.user}'s systemd manager did not reload (${reload.stderr.trim() || `exit ${reload.exitCode}`}): their open panes keep the cap they had; new ones take ${PANE_SCOPE_DROP_IN} once it reloads (as ${manager.user}: \`XDG_RUNTIME_DIR=/run/user/${manager.uid} systemctl --user daemon-reload\`)`,
        );
    }
    if (plan.earlyoom.enable) await systemctl(ctx, ["enable", EARLYOOM]);
    if (plan.earlyoom.start) await systemctl(ctx, ["start", EARLYOOM]);
    if (plan.earlyoom.restart) await systemctl(ctx, ["restart", EARLYOOM]);
    if (plan.oomd.stop.length > 0) await systemctl(ctx, ["stop", ...plan.oomd.stop]);
    if (plan.oomd.disable.length > 0) await systemctl(ctx, ["disable", ...plan.oomd.disable]);
    if (plan.restartDocker) await systemctl(ctx, ["restart", DOCKER]);
    await requireStayedUp(ctx, [
      ...(plan.earlyoom.start || plan.earlyoom.restart ? [EARLYOOM] : []),
      ...(plan.restartDocker ? [DOCKER] : []),
    ]);
    const done = { ...plan, reloadUsers: reloaded };
    return [...changes, ...actions(done).map((description): Change => ({ kind: "action", description }))];
  },
} satisfies Stage<Plan>;
