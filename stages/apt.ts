import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { AptProgress } from "../lib/machine/apt-progress.ts";
import { APT_ENV, updatePackageLists } from "../lib/machine/apt-update.ts";
import { CommandError, LOCK_COMMAND, tail, UserError } from "../lib/core/errors.ts";
import { DPKG_OPTIONS, dpkgAudit, dpkgJournalLeft, repairDpkg, waitForDpkgLock } from "../lib/machine/dpkg.ts";
import { run } from "../lib/machine/exec.ts";
import { extraSuiteFiles, readAptSources } from "../lib/machine/apt-sources.ts";
import {
  exactDependencies,
  parseMadison,
  scratchSourceParts,
  snapshotSource,
  type SnapshotSource,
} from "../lib/machine/apt-snapshot.ts";
import { settingVariables } from "../lib/inputs/settings.ts";
import { applyResources, checkResources, managedBy, type FileResource } from "../lib/machine/files.ts";
import type { Release } from "../lib/machine/releases.ts";
import type { AptPins, Pins } from "../lib/inputs/pins.ts";
import type { Stage } from "../lib/core/stage.ts";

const LOCK_HINT = `run ${LOCK_COMMAND} to refresh pins.json from what the mirror offers now`;
const NETWORK_HINT = "check the network, and the mirror in /etc/apt/sources.list and /etc/apt/sources.list.d/";

/** Installed versions of the given packages, from dpkg's database (no network). */
export async function installedVersions(ctx: BuildContext, names: string[]): Promise<Map<string, string>> {
  // dpkg-query exits 1 when some names were never installed; it still lists the rest.
  const result = await run(ctx, "dpkg-query", ["-W", "-f=${Package}\\t${Version}\\t${db:Status-Status}\\n", ...names], {
    okCodes: [1],
  });
  const versions = new Map<string, string>();
  for (const line of result.stdout.split("\n")) {
    const [name, version, status] = line.split("\t");
    if (name && version && status === "installed") versions.set(name, version);
  }
  return versions;
}

/** This machine's release and its block of apt pins; a release pins.json has no block for is refused, naming the fix. */
export function releasePins(ctx: BuildContext): { release: Release; pins: AptPins } {
  const release = ctx.release;
  const pins = ctx.inputs.pins.apt[release.key as keyof Pins["apt"]];
  if (!pins)
    throw new UserError(
      `pins.json has no apt pins for ${release.name} (apt.${release.key}): this machine's release`,
      `run ${LOCK_COMMAND} on a ${release.name} machine, or \`npm run lock:release -- ${release.key}\` here (docs/cli.md "lock")`,
    );
  return { release, pins };
}

/** Every package of packages.txt has its pin: loadInputs refuses inputs where they disagree. */
function pinnedVersions(ctx: BuildContext): Map<string, string> {
  const { pins } = releasePins(ctx);
  return new Map(ctx.inputs.packages.map((p) => [p.name, pins[p.name]!]));
}

/** The files of the release's extra suite (bookworm's backports for Go), read against the machine's own sources. */
function extraSuite(ctx: BuildContext): FileResource[] {
  return extraSuiteFiles(releasePins(ctx).release, readAptSources(hostPath(ctx, "/")));
}

async function pendingPackages(ctx: BuildContext): Promise<Change[]> {
  const pinned = pinnedVersions(ctx);
  const installed = await installedVersions(ctx, [...pinned.keys()]);
  return [...pinned]
    .filter(([name, version]) => installed.get(name) !== version)
    .map(([name, version]) => ({ kind: "package", name, from: installed.get(name) ?? null, to: version }));
}

/** apt-get update (with apt's `options`); a non-zero exit is the mirror's problem, said as such. */
async function updateLists(ctx: BuildContext, options: string[] = []): Promise<string | null> {
  try {
    return await updatePackageLists(ctx, options);
  } catch (error) {
    if (error instanceof CommandError) throw updateFailed(error.stderr);
    throw error;
  }
}

function updateFailed(stderr: string): UserError {
  return new UserError(`apt-get update failed:\n${tail(stderr, 8)}`, NETWORK_HINT);
}

/** What the configured sources offer of these packages (`apt-cache madison`), with apt's `options`. */
async function offeredVersions(ctx: BuildContext, names: string[], options: string[] = []) {
  const result = await run(ctx, "apt-cache", [...options, "madison", ...names], { env: APT_ENV });
  return parseMadison(result.stdout);
}

type Wanted = { name: string; to: string };

/** How the pins are installed: apt's options (the snapshot's scratch sources), and what comes from the snapshot. */
interface InstallPlan {
  options: string[];
  /** Pins the mirror no longer offers, and the exact dependencies they need at their own versions. */
  fromSnapshot: Array<Wanted & { reason?: string; from?: string | null }>;
  snapshot?: SnapshotSource;
  cleanup: () => Promise<void>;
}

const listOf = (versions: string[] | undefined) => versions?.join(", ") || "no version";

/**
 * Where each pin comes from. The mirror's: nothing else is asked. A pin the
 * mirror no longer offers: from the archive's snapshot at the time the lock
 * recorded, through a source added for this run; when the snapshot lacks it
 * too (or no time is recorded), the build stops before installing anything,
 * naming each such pin, what the mirror offers and the snapshot's time.
 */
async function planInstall(ctx: BuildContext, wanted: Wanted[], updateProblems: string | null): Promise<InstallPlan> {
  const offered = await offeredVersions(
    ctx,
    wanted.map((w) => w.name),
  );
  const stale = wanted.filter((w) => !offered.get(w.name)?.includes(w.to));
  if (stale.length > 0 && updateProblems) throw updateFailed(updateProblems);
  // Lists from an earlier update still offer every pin: the install may work from them (or its cache).
  if (updateProblems) warn(ctx, `apt-get update: ${updateProblems}`);
  const none = { options: [], fromSnapshot: [], cleanup: () => Promise.resolve() };
  if (stale.length === 0) return none;

  const release = ctx.release;
  const mirrorSays = (w: Wanted) => `${w.name}: pinned ${w.to}, the mirror offers ${listOf(offered.get(w.name))}`;
  const time = ctx.inputs.pins.aptSnapshot?.[release.key as keyof Pins["apt"]];
  if (!time)
    throw new UserError(
      `${stale.map(mirrorSays).join("\n")}\n` +
        `pins.json records no snapshot time for ${release.name} (aptSnapshot.${release.key}), so they cannot come from the snapshot archive`,
      LOCK_HINT,
    );
  const source = snapshotSource(release, time, ctx.settings);
  ctx.log.info(
    `${stale.length} pinned version(s) the mirror no longer offers (${stale.map((w) => `${w.name} ${w.to}`).join(", ")}): ` +
      `from the snapshot archive at ${time} (${source.base})`,
  );
  const scratch = await scratchSourceParts(ctx, release, source);
  try {
    // A snapshot apt cannot read (exit 100: no Release file there, a signature the keyring refuses) is the
    // snapshot's problem, said with the pins it was asked for, not the mirror's.
    const problems = await updatePackageLists(ctx, scratch.options).catch((error: unknown) => {
      if (error instanceof CommandError) return tail(error.stderr, 8) || `apt-get update exited ${error.exitCode}`;
      throw error;
    });
    const withSnapshot = await offeredVersions(
      ctx,
      stale.map((w) => w.name),
      scratch.options,
    );
    const absent = stale.filter((w) => !withSnapshot.get(w.name)?.includes(w.to));
    if (absent.length > 0) {
      if (problems)
        throw new UserError(
          `${absent.map(mirrorSays).join("\n")}\nand the snapshot archive at ${time} (${source.base}) could not be read:\n${tail(problems, 8)}`,
          `check the network and ${settingVariables.aptSnapshotUrl}; the snapshot's keyring is ${source.keyring} (${settingVariables.aptSnapshotKeyring})`,
        );
      throw new UserError(
        `${absent.length} pinned version(s) are offered neither by the mirror nor by the snapshot archive at ${time} (${source.base}):\n` +
          absent.map((w) => `${mirrorSays(w)}; the snapshot at ${time} does not have it either`).join("\n"),
        `${LOCK_HINT}; or check pins.json's apt.${release.key} and aptSnapshot.${release.key}`,
      );
    }
    // Every pin found: a suite the snapshot could not serve held none of them.
    if (problems) warn(ctx, `apt-get update, with the snapshot archive at ${time}: ${problems}`);
    const fromSnapshot: InstallPlan["fromSnapshot"] = [...stale];
    for (const dependency of await exactDependenciesOf(ctx, stale, scratch.options)) fromSnapshot.push(dependency);
    return { options: scratch.options, fromSnapshot, snapshot: source, cleanup: scratch.remove };
  } catch (error) {
    await scratch.remove();
    throw error;
  }
}

/**
 * The exact dependencies (`= version`) of the snapshot's packages, and of
 * theirs, that are not installed at that version: apt-get installs a named
 * version but keeps the candidate (the mirror's newer one) for a dependency.
 */
async function exactDependenciesOf(
  ctx: BuildContext,
  from: Wanted[],
  options: string[],
): Promise<Array<Wanted & { reason: string; from: string | null }>> {
  const found = new Map<string, Wanted & { reason: string }>(from.map((w) => [w.name, { ...w, reason: "" }]));
  const added: Array<Wanted & { reason: string; from: string | null }> = [];
  let next = from;
  while (next.length > 0) {
    const shown = await Promise.all(
      next.map((w) => run(ctx, "apt-cache", [...options, "show", `${w.name}=${w.to}`], { env: APT_ENV })),
    );
    const more: Wanted[] = [];
    for (const [i, show] of shown.entries()) {
      for (const dependency of exactDependencies(show.stdout)) {
        if (found.has(dependency.name)) continue;
        const entry = {
          name: dependency.name,
          to: dependency.version,
          reason: `${next[i]!.name} ${next[i]!.to} needs it`,
        };
        found.set(dependency.name, entry);
        more.push(entry);
      }
    }
    const installed = await installedVersions(
      ctx,
      more.map((w) => w.name),
    );
    added.push(
      ...more
        .filter((w) => installed.get(w.name) !== w.to)
        .map((w) => ({ ...found.get(w.name)!, from: installed.get(w.name) ?? null })),
    );
    next = more;
  }
  return added;
}

/**
 * apt-get's arguments for installing the pins, before the progress plumbing
 * (`npm run bench:scratch`'s floor uses them too). Dpkg::Use-Pty=0: with a
 * pty (apt's default, even without a terminal) apt runs dpkg in a session of
 * its own (setsid), out of the process group the builder records, so a
 * killed builder's dpkg escaped the next build's lock takeover.
 */
export const APT_INSTALL = ["install", "-y", "-q", "--allow-downgrades", ...DPKG_OPTIONS];

/** One apt-get install of every pin, its progress shown from apt's status fd. */
async function installPinned(ctx: BuildContext, wanted: Wanted[], options: string[]): Promise<void> {
  const progress = new AptProgress((line) => ctx.log.info(line));
  try {
    await run(
      ctx,
      "apt-get",
      [
        ...options,
        ...APT_INSTALL,
        // Another package manager that took dpkg's lock since waitForDpkgLock: apt waits for it too.
        ...["-o", "DPkg::Lock::Timeout=60", "-o", "APT::Status-Fd=3"],
        ...wanted.map((w) => `${w.name}=${w.to}`),
      ],
      {
        env: APT_ENV,
        heartbeat: { label: "apt-get install", everyMs: 0 },
        onStdoutLine: (l) => progress.stdout(l),
        onStatusLine: (l) => progress.status(l),
      },
    );
  } catch (error) {
    if (error instanceof CommandError && /Failed to fetch|Unable to fetch/.test(error.stderr)) {
      throw new UserError(`apt-get install could not download packages:\n${tail(error.stderr, 8)}`, NETWORK_HINT);
    }
    throw error;
  }
}

export default {
  name: "apt",
  description: "Installs packages.txt at the exact versions pinned in pins.json, in one apt-get call",
  async check(ctx) {
    if (underRoot(ctx)) return { skip: "apt installs into the machine itself, not under --root" };
    // dpkg --audit too (a few ms): a dependency left half-configured, with every pin installed, is still repaired.
    const broken = dpkgJournalLeft() || (await dpkgAudit(ctx)) !== "";
    const repair: Change[] = broken
      ? [{ kind: "action", description: `repair the interrupted dpkg (dpkg --configure -a)` }]
      : [];
    const suite = extraSuite(ctx);
    return {
      changes: [...repair, ...(await checkResources(ctx, suite)), ...(await pendingPackages(ctx))],
      managed: managedBy(suite),
    };
  },
  async apply(ctx, pending) {
    // Before any apt-get: the packages pinned from the extra suite are found there only.
    const suiteChanges = await applyResources(ctx, extraSuite(ctx));
    const done = () => [...pending.changes.filter((c) => c.kind === "action" || c.kind === "package"), ...suiteChanges];
    // A build killed during dpkg's work leaves it interrupted: apt-get refuses everything until it is repaired.
    const journal = dpkgJournalLeft();
    // check asked dpkg --audit already: asked again only for a repair it found, for the reason to print.
    const audit = !journal && pending.changes.some((c) => c.kind === "action") ? await dpkgAudit(ctx) : "";
    const repaired = journal || audit !== "";
    if (journal) await repairDpkg(ctx, "dpkg was interrupted (its journal in /var/lib/dpkg/updates is not empty)");
    else if (repaired) {
      try {
        await repairDpkg(ctx, `dpkg --audit finds packages left half-way (${audit.split("\n")[0]})`);
      } catch (error) {
        // With every pin in place, a package no repair fixes (a third party's broken postinst, say) is
        // said, not made the reason the build stops: before check asked dpkg --audit, such a build went on.
        if (!(error instanceof UserError) || pending.changes.some((c) => c.kind === "package")) throw error;
        warn(ctx, `${error.message}\nhint: ${error.hint}`);
        return suiteChanges;
      }
    }
    // A repair may have finished installing some of them.
    const pendingNow = repaired ? await pendingPackages(ctx) : pending.changes;
    const wanted = pendingNow.flatMap((c) => (c.kind === "package" ? [{ name: c.name, to: c.to }] : []));
    if (wanted.length === 0) return done();
    await waitForDpkgLock(ctx);
    // Only now is the network needed: a rerun with everything in place makes no request.
    ctx.log.info(`${wanted.length} package(s) of packages.txt to install: apt-get update first`);
    const plan = await planInstall(ctx, wanted, await updateLists(ctx));
    try {
      const extra = plan.fromSnapshot.filter((d) => !wanted.some((w) => w.name === d.name));
      await installPinned(ctx, [...wanted, ...extra], plan.options);
    } finally {
      await plan.cleanup();
    }
    const left = await pendingPackages(ctx);
    if (left.length > 0)
      throw new UserError(
        `apt-get finished but ${left.map((c) => (c.kind === "package" ? c.name : "")).join(", ")} is not at its pin`,
      );
    if (plan.fromSnapshot.length === 0) return done();
    // The report says which pins came from the snapshot, and what they needed from it.
    const via = `the snapshot archive at ${plan.snapshot!.time}`;
    const snapshotOf = new Map(plan.fromSnapshot.map((w) => [w.name, w]));
    return [
      ...done().map((c) => (c.kind === "package" && snapshotOf.has(c.name) ? { ...c, via } : c)),
      ...plan.fromSnapshot
        .filter((d) => !wanted.some((w) => w.name === d.name))
        .map((d): Change => ({
          kind: "package",
          name: d.name,
          from: d.from ?? null,
          to: d.to,
          via: `${via}, as ${d.reason}`,
        })),
    ];
  },
  async inventory(ctx) {
    // Every installed package, dependencies included: they are not pinned, so
    // they are recorded, and a drift shows in the manifest.
    const result = await run(ctx, "dpkg-query", [
      "-W",
      "-f=${db:Status-Status}\\t${Package}:${Architecture}\\t${Version}\\n",
    ]);
    return Object.fromEntries(
      result.stdout
        .split("\n")
        .map((l) => l.split("\t"))
        .filter(([status]) => status === "installed")
        .map(([, name, version]) => [`apt:${name}`, version!]),
    );
  },
} satisfies Stage;
