// `build.ts lock`: refreshes pins.json from what the sources offer now.
// Versions of Node, npm, claude-code, codex, t3 and kubelogin move only when
// asked (--update NAME[@VERSION]); t3 only by name, with an exact version.
// kubectl's version is edited by hand; lock fills its sha256 when missing.
import path from "node:path";
import { readFile } from "node:fs/promises";
import { UserError } from "../../core/errors.ts";
import { writeFileAtomic } from "../../machine/files.ts";
import type { Inputs } from "../../inputs/index.ts";
import { PinsSchema, snapshotTimeOf, type Pins } from "../../inputs/pins.ts";
import { machineRelease, RELEASES } from "../../machine/releases.ts";
import { latestVersion, versionInfo } from "../../sources/registry.ts";
import type { Command } from "../command.ts";
import { trustExtraCaCertsInChildren } from "../extra-ca-certs.ts";
import { say } from "../terminal.ts";
import {
  aptCandidates,
  kubectlPin,
  kubeloginPin,
  nodePin,
  reasonOf,
  type RefreshContext,
  type Unresolved,
} from "./pin-sources.ts";

export const lockCommand: Command = {
  forLock: true,
  async run({ cli, settings, log, cacheDir, inputs, inputsDir, outputDir, session }) {
    trustExtraCaCertsInChildren(settings.extraCaCerts, outputDir);
    const { changes, unresolved } = await refreshPins({ settings, log, cacheDir, session }, inputs, {
      pinsFile: path.join(inputsDir, "pins.json"),
      updates: cli.update,
      aptOnly: cli.aptOnly ?? false,
    });
    if (unresolved.length > 0) {
      say(describeUnresolved(unresolved));
      return { outcome: "failed" };
    }
    say(
      changes.length === 0
        ? "pins.json is up to date"
        : `pins.json changed:\n${changes.map((c) => `  ${c}`).join("\n")}`,
    );
    return { outcome: "ok" };
  },
};

export const UPDATABLE = ["node", "npm", "claude-code", "codex", "t3", "kubelogin"] as const;
type Updatable = (typeof UPDATABLE)[number];

export interface RefreshRequest {
  pinsFile: string;
  updates: string[];
  /** The machine whose release and apt sources the apt pins are read from: "/" unless a test says otherwise. */
  root?: string;
  /** Only this release's apt pins; every other entry is kept and no other source asked (`npm run lock:release`). */
  aptOnly?: boolean;
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

export interface PinsRefresh {
  /** One line per pin that changed ("key: before -> after"); empty when nothing changed or nothing was written. */
  changes: string[];
  unresolved: Unresolved[];
}

/**
 * Refreshes pins.json. All or nothing: the file is written only when every
 * entry resolved, so a refresh that could not reach a source (or was asked for
 * a version the registry does not have) leaves the file byte for byte as it
 * was and names each entry it could not resolve; build.ts exits non-zero.
 */
export async function refreshPins(ctx: RefreshContext, inputs: Inputs, request: RefreshRequest): Promise<PinsRefresh> {
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
      if (request.aptOnly) return current;
      const version = updates.has(key) ? (updates.get(key) ?? (await latestVersion(ctx, name))) : current.version;
      const integrity = (await versionInfo(ctx, name, version)).dist.integrity;
      if (!integrity)
        throw new UserError(
          `the registry gives ${name}@${version} no integrity`,
          "use a registry that publishes sha512 integrities (dist.integrity)",
        );
      return { version, integrity };
    });

  // Only this machine's release: the others are refreshed on machines (or containers) of theirs.
  const root = request.root ?? "/";
  const release = await attempt("apt", undefined, () => Promise.resolve(machineRelease(root)));
  const oldApt = release ? (old.apt[release.key as keyof Pins["apt"]] ?? {}) : {};
  let askedAt: Date | undefined;
  // The sources are independent: asked at once, so an unreachable one costs one timeout, not one per entry.
  const [apt, node, npm, claudeCode, codex, t3, kubelogin, kubectl] = await Promise.all([
    release
      ? aptCandidates(
          ctx,
          { root, release },
          inputs.packages.map((p) => p.name),
          oldApt,
          unresolved,
          notes,
          (at) => (askedAt = at),
        )
      : oldApt,
    request.aptOnly
      ? (({ npm: _, ...node }) => node)(old.node)
      : nodePin(ctx, old.node, updates.has("node") ? { to: updates.get("node") } : undefined, attempt),
    npmPin("node.npm", "npm", "npm", old.node.npm),
    npmPin(
      "npm.@anthropic-ai/claude-code",
      "@anthropic-ai/claude-code",
      "claude-code",
      old.npm["@anthropic-ai/claude-code"],
    ),
    npmPin("npm.@openai/codex", "@openai/codex", "codex", old.npm["@openai/codex"]),
    npmPin("npm.t3", "t3", "t3", old.npm.t3),
    request.aptOnly
      ? old.kubelogin
      : attempt("kubelogin", old.kubelogin, () => kubeloginPin(ctx, old.kubelogin, updates.get("kubelogin"), notes)),
    request.aptOnly ? old.kubectl : attempt("kubectl", old.kubectl, () => kubectlPin(ctx, old.kubectl, notes)),
  ]);
  const pins = ordered({
    ...old,
    apt: release ? { ...old.apt, [release.key]: apt } : old.apt,
    aptSnapshot: release ? aptSnapshotAfter(old, release.key, apt, askedAt) : old.aptSnapshot,
    node: { ...node, npm },
    npm: {
      "@anthropic-ai/claude-code": claudeCode,
      "@openai/codex": codex,
      t3: { ...t3, ...t3Approval(old.npm.t3, t3.version, updates.has("t3")) },
    },
    kubelogin,
    kubectl,
  });
  // A moved version must still pass pins.json's own rules (t3's approval, Node 22, kubelogin's release).
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

/**
 * Puts one release's apt pins, as a lock on a machine of that release found
 * them, into pins.json, leaving every other entry as it is. What `npm run
 * lock:release` does with a lock run in a container of that release. Returns
 * the changed pins, as lock describes them.
 */
export async function replaceAptPins(
  pinsFile: string,
  release: string,
  apt: Record<string, string>,
  snapshot: string | undefined,
): Promise<string[]> {
  const before = PinsSchema.parse(JSON.parse(await readFile(pinsFile, "utf8")));
  const after = ordered({
    ...before,
    apt: { ...before.apt, [release]: apt },
    aptSnapshot: { ...before.aptSnapshot, ...(snapshot ? { [release]: snapshot } : {}) },
  });
  const valid = PinsSchema.safeParse(after);
  if (!valid.success)
    throw new UserError(
      `the apt pins found for ${release} are not valid pins: ${valid.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  const text = `${JSON.stringify(after, null, 2)}\n`;
  if (text !== (await readFile(pinsFile, "utf8")))
    await writeFileAtomic(pinsFile, text, { mode: 0o644, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  return describeChanges(before, after);
}

/** The unresolved entries as build.ts prints them: one line each, then each distinct hint once. */
export function describeUnresolved(unresolved: Unresolved[]): string {
  const count = `${unresolved.length} ${unresolved.length === 1 ? "entry" : "entries"}`;
  const lines = unresolved.map((u) => `  ${u.entry}: ${u.reason.replace(/\n/g, "\n    ")}`);
  const hints = [...new Set(unresolved.flatMap((u) => (u.hint ? [u.hint] : [])))].map((hint) => `hint: ${hint}`);
  return [`error: pins.json was not changed: ${count} could not be resolved`, ...lines, ...hints].join("\n");
}

/** Leaving 0.0.26 needs a recorded approval: written when asked by name, kept while the version stays. */
function t3Approval(old: Pins["npm"]["t3"], version: string, asked: boolean): { approved?: string } {
  if (asked && version !== "0.0.26")
    return { approved: `moved from ${old.version} by build.ts lock --update t3@${version}` };
  return old.approved && version === old.version ? { approved: old.approved } : {};
}

/**
 * The snapshot times after a lock of one release's apt pins: the moment the
 * lock asked the mirror, when the pins changed or no time was recorded yet;
 * else the recorded one, which those versions were current at too (a lock
 * that finds nothing new changes nothing).
 */
function aptSnapshotAfter(
  old: Pins,
  key: string,
  apt: Record<string, string>,
  askedAt: Date | undefined,
): Pins["aptSnapshot"] {
  const recorded = old.aptSnapshot?.[key as keyof Pins["apt"]];
  const same =
    JSON.stringify(Object.entries(apt).sort()) ===
    JSON.stringify(Object.entries(old.apt[key as keyof Pins["apt"]] ?? {}).sort());
  if (!askedAt || (recorded && same)) return old.aptSnapshot;
  return { ...old.aptSnapshot, [key]: snapshotTimeOf(askedAt) };
}

/** pins.json's keys in a fixed order, so the file is the same for the same pins. */
function ordered(pins: Pins): Pins {
  const { $comment, node, npm, kubelogin, kubectl, apt, aptSnapshot } = pins;
  const byRelease = <T>(record: Partial<Record<string, T>> | undefined, each: (value: T) => T) =>
    Object.fromEntries(
      RELEASES.flatMap(({ key }) => {
        const value = record?.[key];
        return value === undefined ? [] : [[key, each(value)]];
      }),
    );
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
    // Releases in the order of lib/machine/releases.ts, packages by name.
    apt: byRelease(apt, (block) => Object.fromEntries(Object.entries(block).sort(([a], [b]) => (a < b ? -1 : 1)))),
    ...(aptSnapshot && Object.keys(aptSnapshot).length > 0 ? { aptSnapshot: byRelease(aptSnapshot, (t) => t) } : {}),
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
