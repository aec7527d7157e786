import type { Change } from "../lib/change.ts";
import type { BuildContext } from "../lib/context.ts";
import { underRoot } from "../lib/context.ts";
import { UserError } from "../lib/errors.ts";
import { run } from "../lib/exec.ts";
import type { Stage } from "../lib/stage.ts";

const APT_ENV = { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" };
const LOCK_HINT = "run `npx tsx build.ts lock` to refresh pins.json from what the mirror offers now";

/** Installed versions of the given packages, from dpkg's database (no network). */
export async function installedVersions(ctx: BuildContext, names: string[]): Promise<Map<string, string>> {
  // dpkg-query exits 1 when some names were never installed; it still lists the rest.
  const result = await run(ctx, "dpkg-query", ["-W", "-f=${Package}\\t${Version}\\t${db:Status-Status}\\n", ...names], { okCodes: [1] });
  const versions = new Map<string, string>();
  for (const line of result.stdout.split("\n")) {
    const [name, version, status] = line.split("\t");
    if (name && version && status === "installed") versions.set(name, version);
  }
  return versions;
}

function pinnedVersions(ctx: BuildContext): Map<string, string> {
  const missing = ctx.inputs.packages.filter((p) => !ctx.inputs.pins.apt[p.name]);
  if (missing.length > 0) {
    throw new UserError(`pins.json has no apt version for ${missing.map((p) => `${p.name} (packages.txt:${p.line})`).join(", ")}`, LOCK_HINT);
  }
  return new Map(ctx.inputs.packages.map((p) => [p.name, ctx.inputs.pins.apt[p.name]!]));
}

async function pendingPackages(ctx: BuildContext): Promise<Change[]> {
  const pinned = pinnedVersions(ctx);
  const installed = await installedVersions(ctx, [...pinned.keys()]);
  return [...pinned]
    .filter(([name, version]) => installed.get(name) !== version)
    .map(([name, version]) => ({ kind: "package", name, from: installed.get(name) ?? null, to: version }));
}

/** Fails before installing anything when the mirror no longer offers a pinned version. */
async function requireAvailable(ctx: BuildContext, wanted: Array<{ name: string; to: string }>): Promise<void> {
  const result = await run(ctx, "apt-cache", ["madison", ...wanted.map((w) => w.name)], { env: APT_ENV });
  const offered = new Map<string, string[]>();
  for (const line of result.stdout.split("\n")) {
    const [name, version] = line.split("|").map((f) => f.trim());
    if (name && version) offered.set(name, [...(offered.get(name) ?? []), version]);
  }
  const unavailable = wanted.filter((w) => !offered.get(w.name)?.includes(w.to));
  if (unavailable.length > 0) {
    throw new UserError(
      unavailable.map((w) => `${w.name}: pinned ${w.to}, the mirror offers ${offered.get(w.name)?.join(", ") || "no version"}`).join("\n"),
      LOCK_HINT,
    );
  }
}

export default {
  name: "apt",
  description: "Installs packages.txt at the exact versions pinned in pins.json, in one apt-get call",
  async check(ctx) {
    if (underRoot(ctx)) return { skip: "apt installs into the machine itself, not under --root" };
    return { changes: await pendingPackages(ctx), managed: [] };
  },
  async apply(ctx, pending) {
    const wanted = pending.changes.flatMap((c) => (c.kind === "package" ? [{ name: c.name, to: c.to }] : []));
    // Only now is the network needed: a rerun with everything in place makes no request.
    ctx.log.info(`apt-get update, then installing ${wanted.length} package(s)`);
    await run(ctx, "apt-get", ["update", "-q"], { env: APT_ENV });
    await requireAvailable(ctx, wanted);
    await run(
      ctx,
      "apt-get",
      ["install", "-y", "-q", "--allow-downgrades", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", ...wanted.map((w) => `${w.name}=${w.to}`)],
      { env: APT_ENV },
    );
    const left = await pendingPackages(ctx);
    if (left.length > 0) throw new UserError(`apt-get finished but ${left.map((c) => (c.kind === "package" ? c.name : "")).join(", ")} is not at its pin`);
    return pending.changes;
  },
  async inventory(ctx) {
    // Every installed package, dependencies included: they are not pinned, so
    // they are recorded, and a drift shows in the manifest.
    const result = await run(ctx, "dpkg-query", ["-W", "-f=${db:Status-Status}\\t${Package}:${Architecture}\\t${Version}\\n"]);
    return Object.fromEntries(
      result.stdout
        .split("\n")
        .map((l) => l.split("\t"))
        .filter(([status]) => status === "installed")
        .map(([, name, version]) => [`apt:${name}`, version!]),
    );
  },
} satisfies Stage;
