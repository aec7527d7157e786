import { UserError } from "../lib/core/errors.ts";
import { applyResources, planResources, type Resource } from "../lib/machine/files.ts";
import type { BuildContext } from "../lib/core/context.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import type { Stage } from "../lib/core/stage.ts";

const SOURCE = "claude-code/managed-settings.json";
// Managed settings are readable by every user: a key that looks like a
// credential, or a value shaped like one, has no place in them (docs/devvm.md
// stage 8: no secrets, ever).
const SECRET_LIKE = /token|secret|password|api[-_]?key|credential/i;
const TOKEN_SHAPES: [kind: string, shape: RegExp][] = [
  ["an Anthropic or OpenAI key", /\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}/],
  ["a Vault token", /\bhv[sbr]\.[A-Za-z0-9_-]{16,}/],
  ["a GitHub token", /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})/],
  ["a GitLab token", /\bglpat-[A-Za-z0-9_-]{16,}/],
  ["an AWS access key", /\bAKIA[0-9A-Z]{16}\b/],
  ["a JWT", /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./],
  ["a private key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
  ["a long hex string", /(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])/i],
];
// Base64 runs: long, and mixing upper case, lower case and digits (a path or
// a sentence does not).
const BASE64_RUN = /[A-Za-z0-9+/_=-]{40,}/g;

function resources(ctx: BuildContext): Resource[] {
  const content = repoFile(ctx, SOURCE);
  assertNoSecrets(content.toString("utf8"));
  return [
    { kind: "dir", path: "/etc/claude-code", mode: 0o755 },
    { kind: "file", path: "/etc/claude-code/managed-settings.json", mode: 0o644, content },
  ];
}

export function assertNoSecrets(json: string): void {
  const settings = JSON.parse(json) as Record<string, unknown>;
  for (const key of ["model", "claudeMd"]) {
    if (typeof settings[key] !== "string") throw new UserError(`files/${SOURCE}: expected a string "${key}"`);
  }
  const suspicious = Object.keys(settings).filter((k) => SECRET_LIKE.test(k));
  if (suspicious.length > 0)
    throw new UserError(
      `files/${SOURCE}: ${suspicious.join(", ")} looks like a secret`,
      "managed settings are world-readable; stage secrets through vault-tokens",
    );
  for (const [where, text] of strings(settings, "")) {
    const kind = tokenKind(text);
    // Says where and what kind, never the value itself.
    if (kind)
      throw new UserError(
        `files/${SOURCE}: ${where} holds what looks like ${kind}`,
        "managed settings are world-readable; stage secrets through vault-tokens",
      );
  }
}

/**
 * Every key and string value in a parsed JSON value, with where it is
 * (`claudeMd`, `env.FOO`, `a[2]`). A key comes before what it holds, so a
 * key shaped like a token is refused before any location could name it.
 */
function strings(value: unknown, where: string): [where: string, text: string][] {
  if (typeof value === "string") return [[where, value]];
  if (Array.isArray(value)) return value.flatMap((item, i) => strings(item, `${where}[${i}]`));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, item]): [string, string][] => [
    [`a key in ${where || "the top level"}`, key],
    ...strings(item, where ? `${where}.${key}` : key),
  ]);
}

function tokenKind(text: string): string | undefined {
  const shaped = TOKEN_SHAPES.find(([, shape]) => shape.test(text));
  if (shaped) return shaped[0];
  const mixed = text.match(BASE64_RUN)?.some((run) => /[A-Z]/.test(run) && /[a-z]/.test(run) && /[0-9]/.test(run));
  return mixed ? "a long base64 string" : undefined;
}

export default {
  name: "managed-settings",
  description: "Writes the org's enforced Claude Code settings to /etc/claude-code/managed-settings.json",
  async check(ctx) {
    const planned = resources(ctx);
    return { ...(await planResources(ctx, planned)), plan: planned };
  },
  apply: async (ctx, { plan }) => applyResources(ctx, plan),
} satisfies Stage<Resource[]>;
