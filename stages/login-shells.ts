import { existsSync, readFileSync } from "node:fs";
import type { BuildContext } from "../lib/core/context.ts";
import { hostPath } from "../lib/core/context.ts";
import { repoFile } from "../lib/inputs/repo-files.ts";
import type { Stage } from "../lib/core/stage.ts";
import { applyResources, planResources, type Resource } from "../lib/machine/files.ts";

// Login shells find per-user tools and tokens in bash and zsh alike. bash's
// login shells read /etc/profile.d through /etc/profile; Debian's zsh never
// reads /etc/profile, so /etc/zsh/zshenv (read by every zsh) sources the
// same two files from a marked block; the rest of zshenv is the package's
// and stays as it is.

export const PROFILE_FILES = ["10-local-bin.sh", "25-claude-oauth-token.sh"] as const;
export const ZSHENV = "/etc/zsh/zshenv";
const BEGIN = "# >>> devvm: login shells (stage login-shells), edits are overwritten >>>";
const END = "# <<< devvm: login shells <<<";

/** text with the marked block in place of the old one, or appended once. */
export function withZshBlock(text: string): string {
  const block = [
    BEGIN,
    ...PROFILE_FILES.map((f) => `[ -r /etc/profile.d/${f} ] && . /etc/profile.d/${f}`),
    END,
    "",
  ].join("\n");
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END, start);
  if (start >= 0 && end > start) {
    const after = text.slice(end + END.length).replace(/^\n/, "");
    return `${text.slice(0, start)}${block}${after}`;
  }
  const separator = text === "" || text.endsWith("\n") ? "" : "\n";
  return `${text}${separator}${block}`;
}

function resources(ctx: BuildContext): Resource[] {
  const profile: Resource[] = PROFILE_FILES.map((name) => ({
    kind: "file",
    path: `/etc/profile.d/${name}`,
    mode: 0o644,
    content: repoFile(ctx, `login-shells/${name}`),
  }));
  // zsh's folder comes with its package (apt); without zsh there is nothing to hook.
  if (!existsSync(hostPath(ctx, "/etc/zsh"))) return profile;
  const zshenv = hostPath(ctx, ZSHENV);
  const text = existsSync(zshenv) ? readFileSync(zshenv, "utf8") : "";
  return [...profile, { kind: "file", path: ZSHENV, mode: 0o644, content: withZshBlock(text) }];
}

export default {
  name: "login-shells",
  description:
    "Puts ~/.local/bin first and the user's own Claude token in bash and zsh login shells alike (/etc/profile.d, sourced from /etc/zsh/zshenv too)",
  async check(ctx) {
    const planned = resources(ctx);
    return { ...(await planResources(ctx, planned)), plan: planned };
  },
  apply: async (ctx, { plan }) => applyResources(ctx, plan),
} satisfies Stage<Resource[]>;
