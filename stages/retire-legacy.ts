import { promises as fs } from "node:fs";
import path from "node:path";
import { action, type Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, warn } from "../lib/core/context.ts";
import { lstatOrNull } from "../lib/machine/files.ts";
import { BIN_DIR } from "../lib/machine/layout.ts";
import type { Stage } from "../lib/core/stage.ts";
import { offlineReason, systemctl, UNIT_DIR } from "../lib/machine/systemd.ts";

// What the old bash scripts installed on the live devvm, each a .service and
// a .timer, and what replaces it (docs/devvm.md "Adopting the live devvm"). Left
// running, the old reconcile and the builder would fight over the same files
// and the old updater would move t3 past its pin. Their programs are the
// known script names below plus whatever ExecStart= runs from /usr/local/bin.
const LEGACY = [
  { unit: "t3-provision-users", replacedBy: "the builder's users and instances stages, run by devvm-reconcile.timer" },
  { unit: "t3-autoupdate", replacedBy: "devvm-t3-pin.timer" },
  { unit: "t3-backup-state", replacedBy: "t3-state-backup.timer" },
];
const scriptNames = (unit: string) => [`${unit}.sh`, unit];
const UNIT_NAMES = [...LEGACY.map((l) => `${l.unit}.timer`), ...LEGACY.map((l) => `${l.unit}.service`)];

// The builder's own programs: never removed, whatever an old unit ran.
const BUILDER_OWNED = new Set([
  "t3",
  "t3-mint",
  "t3-dispatch",
  "t3-state-backup",
  "t3-watchdog",
  "claude-auth-sync",
  "tmux-persist",
  "node",
  "npm",
  "npx",
  "claude",
  "codex",
  "kubelogin",
  "kubectl",
  "kubectl-oidc_login",
]);

// The old scripts copied their units into /etc; /lib is /usr/lib on Debian 12 (merged /usr).
const UNIT_DIRS = [UNIT_DIR, "/usr/lib/systemd/system"];
const NPM_T3_LINK = "/usr/bin/t3";
/** Where the old updater's `npm install -g t3` put it (npm prefix /usr). */
export const NPM_T3_DIR = "/usr/lib/node_modules/t3";

/** A legacy unit found here: its unit files, and the links enabling it. */
interface LegacyUnit {
  name: string;
  unit: string;
  replacedBy: string;
  files: string[];
  links: string[];
}

/** /usr/bin/t3 and the package folder it leads to; usedBy: pids still running the old t3. */
interface NpmT3 {
  link: "legacy" | "absent" | { foreign: string };
  dir: boolean;
  usedBy: number[];
}

interface Legacy {
  units: LegacyUnit[];
  /** Program path -> the legacy unit it belonged to. */
  programs: Map<string, string>;
  npmT3: NpmT3;
}

const ownerOf = (name: string) => LEGACY.find((l) => name.startsWith(`${l.unit}.`))!;

async function existing(ctx: BuildContext, paths: string[]): Promise<string[]> {
  const stats = await Promise.all(paths.map((p) => lstatOrNull(hostPath(ctx, p))));
  return paths.filter((_, i) => stats[i]);
}

/** Links to the legacy units in /etc/systemd/system/*.wants and *.requires, as enable leaves them. */
async function enableLinks(ctx: BuildContext): Promise<string[]> {
  const names = await fs.readdir(hostPath(ctx, UNIT_DIR)).catch(() => [] as string[]);
  const dirs = names.filter((n) => n.endsWith(".wants") || n.endsWith(".requires")).map((n) => `${UNIT_DIR}/${n}`);
  const links = await Promise.all(
    dirs.map(async (dir) =>
      (await fs.readdir(hostPath(ctx, dir)).catch(() => [] as string[])).map((n) => `${dir}/${n}`),
    ),
  );
  return links.flat().filter((link) => UNIT_NAMES.includes(path.basename(link)));
}

async function findUnits(ctx: BuildContext): Promise<LegacyUnit[]> {
  const links = await enableLinks(ctx);
  const units = await Promise.all(
    UNIT_NAMES.map(async (name) => ({
      name,
      ...ownerOf(name),
      files: await existing(
        ctx,
        UNIT_DIRS.map((dir) => `${dir}/${name}`),
      ),
      links: links.filter((l) => path.basename(l) === name),
    })),
  );
  return units.filter((u) => u.files.length > 0 || u.links.length > 0);
}

/** The programs a unit's ExecStart= lines run: systemd's prefixes (- @ : + !) stripped, and a shell's script. */
function execStartPrograms(unitText: string): string[] {
  return unitText.split("\n").flatMap((line) => {
    const words =
      /^\s*ExecStart\s*=\s*(.*)$/
        .exec(line)?.[1]
        ?.replace(/^[-@:+!|]+/, "")
        .replace(/["']/g, "")
        .split(/\s+/)
        .filter(Boolean) ?? [];
    const script = /^(ba|da)?sh$/.test(path.basename(words[0] ?? ""))
      ? words.slice(1).find((w) => !w.startsWith("-"))
      : undefined;
    return [words[0], script].filter((w): w is string => w !== undefined).map((w) => path.posix.normalize(w));
  });
}

/** Read before the unit files go. */
async function findPrograms(ctx: BuildContext, units: LegacyUnit[]): Promise<Map<string, string>> {
  const candidates = new Map<string, string>();
  for (const u of units.filter((u) => u.name.endsWith(".service"))) {
    for (const file of u.files)
      for (const program of execStartPrograms(await fs.readFile(hostPath(ctx, file), "utf8").catch(() => "")))
        candidates.set(program, u.unit);
  }
  for (const { unit } of LEGACY)
    for (const name of scriptNames(unit))
      if (!candidates.has(`${BIN_DIR}/${name}`)) candidates.set(`${BIN_DIR}/${name}`, unit);
  const ours = [...candidates.keys()].filter(
    (p) => path.posix.dirname(p) === BIN_DIR && !BUILDER_OWNED.has(path.posix.basename(p)),
  );
  return new Map((await existing(ctx, ours)).map((p) => [p, candidates.get(p)!]));
}

async function classifyT3Link(ctx: BuildContext): Promise<NpmT3["link"]> {
  const stats = await lstatOrNull(hostPath(ctx, NPM_T3_LINK));
  if (!stats) return "absent";
  if (!stats.isSymbolicLink()) return { foreign: "is not a symlink" };
  const target = await fs.readlink(hostPath(ctx, NPM_T3_LINK));
  const resolved = path.posix.resolve(path.posix.dirname(NPM_T3_LINK), target);
  return resolved.startsWith(`${NPM_T3_DIR}/`) ? "legacy" : { foreign: `points to ${target}` };
}

/** Pids whose command line names the old global t3: a running old instance may still load files from its folder. */
async function processesUsingNpmT3(ctx: BuildContext): Promise<number[]> {
  const [bin, dir] = [hostPath(ctx, NPM_T3_LINK), hostPath(ctx, NPM_T3_DIR)];
  const pids = (await fs.readdir("/proc")).filter((n) => /^\d+$/.test(n));
  const uses = async (pid: string) =>
    (await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => ""))
      .split("\0")
      .some((a) => a === bin || `${a}/`.includes(`${dir}/`));
  const using = await Promise.all(pids.map(async (pid) => ((await uses(pid)) ? [Number(pid)] : [])));
  return using.flat();
}

async function findNpmT3(ctx: BuildContext): Promise<NpmT3> {
  const link = await classifyT3Link(ctx);
  // A /usr/bin/t3 left alone may still need the package, so its folder stays too.
  const dir = typeof link === "string" && (await lstatOrNull(hostPath(ctx, NPM_T3_DIR))) !== null;
  return { link, dir, usedBy: dir ? await processesUsingNpmT3(ctx) : [] };
}

async function findLegacy(ctx: BuildContext): Promise<Legacy> {
  const units = await findUnits(ctx);
  return { units, programs: await findPrograms(ctx, units), npmT3: await findNpmT3(ctx) };
}

function plannedChanges(ctx: BuildContext, { units, programs, npmT3 }: Legacy): Change[] {
  const verb = offlineReason(ctx) ? "disable" : "stop and disable";
  return [
    ...units.map((u) => action(`${verb} ${u.name} (replaced by ${u.replacedBy})`)),
    ...units.flatMap((u) => u.files.map((file) => action(`remove ${file}`))),
    ...[...programs].map(([program, unit]) => action(`remove ${program} (old ${unit}'s program)`)),
    ...(npmT3.link === "legacy" ? [action(`remove ${NPM_T3_LINK} (global npm t3 of the old updater)`)] : []),
    ...(npmT3.dir && npmT3.usedBy.length === 0
      ? [action(`remove ${NPM_T3_DIR} (global npm t3 of the old updater)`)]
      : []),
  ];
}

async function retireUnits(ctx: BuildContext, units: LegacyUnit[]): Promise<void> {
  if (units.length === 0) return;
  const online = !offlineReason(ctx);
  // Timers first, so none starts its service again; exit 5: not loaded, nothing to stop.
  for (const suffix of [".timer", ".service"]) {
    const names = units.map((u) => u.name).filter((n) => n.endsWith(suffix));
    if (online && names.length > 0) await systemctl(ctx, ["stop", ...names], [5]);
  }
  const withFiles = units.filter((u) => u.files.length > 0).map((u) => u.name);
  if (withFiles.length > 0) await systemctl(ctx, ["disable", ...withFiles]);
  // disable removes the links [Install] names; a link made some other way, or one whose unit file is gone, goes here.
  for (const link of await enableLinks(ctx)) await fs.rm(hostPath(ctx, link), { force: true });
  for (const file of units.flatMap((u) => u.files)) await fs.rm(hostPath(ctx, file), { force: true });
  if (online && withFiles.length > 0) await systemctl(ctx, ["daemon-reload"]);
}

async function retireNpmT3(ctx: BuildContext, npmT3: NpmT3): Promise<void> {
  if (npmT3.link === "legacy") await fs.rm(hostPath(ctx, NPM_T3_LINK), { force: true });
  if (npmT3.dir && npmT3.usedBy.length === 0) await fs.rm(hostPath(ctx, NPM_T3_DIR), { recursive: true, force: true });
}

function warnAboutNpmT3(ctx: BuildContext, { link, dir, usedBy }: NpmT3): void {
  if (typeof link === "object")
    warn(ctx, `${NPM_T3_LINK} ${link.foreign}, not the old updater's npm link; left alone (a package may own it)`);
  if (dir && usedBy.length > 0)
    ctx.log.info(`${NPM_T3_DIR} is kept until no process uses it (pid ${usedBy.join(", ")}); the next run removes it`);
}

export default {
  name: "retire-legacy",
  description:
    "Stops, disables and removes the old scripts' units (t3-provision-users, t3-autoupdate, t3-backup-state), their programs and the old global npm t3",
  async check(ctx) {
    const legacy = await findLegacy(ctx);
    warnAboutNpmT3(ctx, legacy.npmT3);
    return { changes: plannedChanges(ctx, legacy), managed: [], plan: legacy };
  },
  async apply(ctx, { plan: legacy }) {
    await retireUnits(ctx, legacy.units);
    for (const program of legacy.programs.keys()) await fs.rm(hostPath(ctx, program), { force: true });
    await retireNpmT3(ctx, legacy.npmT3);
    return plannedChanges(ctx, legacy);
  },
} satisfies Stage<Legacy>;
