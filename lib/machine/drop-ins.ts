// Drop-ins beside the builder's own: systemd reads every *.conf of a unit's
// .d folder in the order of their names, a later setting replacing an
// earlier one. A box taken over may hold another file that sets what the
// builder's sets (an old cap under another name); it is named, never
// removed (it is the admin's), so nothing is left doubled unseen.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { hostPath } from "../core/context.ts";

export interface ForeignDropIn {
  path: string;
  /** The keys it sets that the builder's file sets too. */
  keys: string[];
  /** Whether systemd reads it after the builder's, so its values win. */
  wins: boolean;
}

/** The keys an ini-style unit file sets (`Key=value` lines outside comments). */
export function keysSet(text: string): string[] {
  return [...new Set([...text.matchAll(/^\s*([A-Za-z][A-Za-z0-9]*)\s*=/gm)].map((m) => m[1]!))];
}

/**
 * The other drop-ins in `dir` that set any of `keys`. `ours` is the
 * builder's file there, or undefined when the builder's settings are in the
 * unit file itself (every drop-in then wins over them).
 */
export function foreignDropIns(
  ctx: Pick<BuildContext, "root">,
  dir: string,
  ours: string | undefined,
  keys: string[],
): ForeignDropIn[] {
  let names: string[];
  try {
    names = readdirSync(hostPath(ctx, dir)).filter((name) => name.endsWith(".conf") && name !== ours);
  } catch {
    return [];
  }
  return names.sort().flatMap((name) => {
    let text: string;
    try {
      text = readFileSync(hostPath(ctx, path.join(dir, name)), "utf8");
    } catch {
      return [];
    }
    const shared = keysSet(text).filter((key) => keys.includes(key));
    return shared.length > 0
      ? [{ path: path.join(dir, name), keys: shared, wins: ours === undefined || name > ours }]
      : [];
  });
}
