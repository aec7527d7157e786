import type { Change } from "../lib/core/change.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath, underRoot, warn } from "../lib/core/context.ts";
import { AptProgress } from "../lib/machine/apt-progress.ts";
import { APT_ENV, updatePackageLists } from "../lib/machine/apt-update.ts";
import { CommandError, LOCK_COMMAND, tail, UserError } from "../lib/core/errors.ts";
import { DPKG_OPTIONS, dpkgAudit, dpkgJournalLeft, repairDpkg, waitForDpkgLock } from "../lib/machine/dpkg.ts";
import { run } from "../lib/machine/exec.ts";
import { extraSuiteFiles, readAptSources } from "../lib/machine/apt-sources.ts";
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

/** apt-get update; a non-zero exit is the mirror's problem, said as such. */
async function updateLists(ctx: BuildContext): Promise<string | null> {
  try {
    return await updatePackageLists(ctx);
  } catch (error) {
    if (error instanceof CommandError) throw updateFailed(error.stderr);
    throw error;
  }
}

function updateFailed(stderr: string): UserError {
  return new UserError(`apt-get update failed:\n${tail(stderr, 8)}`, NETWORK_HINT);
}

/** Fails before installing anything when the mirror no longer offers a pinned version (or could not be read). */
async function requireAvailable(
  ctx: BuildContext,
  wanted: Array<{ name: string; to: string }>,
  updateProblems: string | null,
): Promise<void> {
  const result = await run(ctx, "apt-cache", ["madison", ...wanted.map((w) => w.name)], { env: APT_ENV });
  const offered = new Map<string, string[]>();
  for (const line of result.stdout.split("\n")) {
    const [name, version] = line.split("|").map((f) => f.trim());
    if (name && version) offered.set(name, [...(offered.get(name) ?? []), version]);
  }
  const unavailable = wanted.filter((w) => !offered.get(w.name)?.includes(w.to));
  if (unavailable.length > 0 && updateProblems) throw updateFailed(updateProblems);
  // Lists from an earlier update still offer every pin: the install may work from them (or its cache).
  if (updateProblems) warn(ctx, `apt-get update: ${updateProblems}`);
  if (unavailable.length > 0) {
    throw new UserError(
      unavailable
        .map((w) => `${w.name}: pinned ${w.to}, the mirror offers ${offered.get(w.name)?.join(", ") || "no version"}`)
        .join("\n"),
      LOCK_HINT,
    );
  }
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
async function installPinned(ctx: BuildContext, wanted: Array<{ name: string; to: string }>): Promise<void> {
  const progress = new AptProgress((line) => ctx.log.info(line));
  try {
    await run(
      ctx,
      "apt-get",
      [
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
    await requireAvailable(ctx, wanted, await updateLists(ctx));
    await installPinned(ctx, wanted);
    const left = await pendingPackages(ctx);
    if (left.length > 0)
      throw new UserError(
        `apt-get finished but ${left.map((c) => (c.kind === "package" ? c.name : "")).join(", ")} is not at its pin`,
      );
    return done();
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
