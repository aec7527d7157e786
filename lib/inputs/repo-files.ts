// The plain files this project installs live under files/; stages read them
// from here so that nothing on the box is ever copied by hand.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";

export function repoFile(ctx: Pick<BuildContext, "repoDir">, relative: string): Buffer {
  return readFileSync(path.join(ctx.repoDir, "files", relative));
}

/** The builder's folder: where build.ts is, or above the bundle in dist/. */
export function findRepoDir(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "files"))) return dir;
    if (dir === path.dirname(dir)) return start;
  }
}

/**
 * A text file of files/ with its `@NAME@` placeholders filled from `values`
 * (the memory caps of the settings). A placeholder without a value is a bug
 * of the caller: it would reach systemd as an invalid setting.
 */
export function repoTemplate(
  ctx: Pick<BuildContext, "repoDir">,
  relative: string,
  values: Record<string, string>,
): string {
  const text = repoFile(ctx, relative)
    .toString("utf8")
    .replace(/@([A-Z][A-Z0-9_]*)@/g, (whole, name: string) => values[name] ?? whole);
  const left = /@[A-Z][A-Z0-9_]*@/.exec(text);
  if (left) throw new Error(`files/${relative}: the placeholder ${left[0]} has no value`);
  return text;
}
