import { UserError } from "../lib/errors.ts";
import { applyResources, planResources, type Resource } from "../lib/files.ts";
import type { BuildContext } from "../lib/context.ts";
import { repoFile } from "../lib/repo-files.ts";
import type { Stage } from "../lib/stage.ts";

const SOURCE = "claude-code/managed-settings.json";
// Managed settings are readable by every user: a key that looks like a
// credential has no place in them (DEVVM.md stage 8: no secrets, ever).
const SECRET_LIKE = /token|secret|password|api[-_]?key|credential/i;

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
  if (suspicious.length > 0) throw new UserError(`files/${SOURCE}: ${suspicious.join(", ")} looks like a secret`, "managed settings are world-readable; stage secrets through vault-tokens");
}

export default {
  name: "managed-settings",
  description: "Writes the org's enforced Claude Code settings to /etc/claude-code/managed-settings.json",
  check: async (ctx) => planResources(ctx, resources(ctx)),
  apply: async (ctx) => applyResources(ctx, resources(ctx)),
} satisfies Stage;
