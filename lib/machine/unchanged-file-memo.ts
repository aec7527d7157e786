// An answer that depends only on a file (its hash, what a binary reports),
// remembered while the file is unchanged (same inode, size and mtime). One
// build asks several times (prepare, check, inventory); a 60 MB binary is
// hashed, or a node spawned, once. Remembered for one build (its session).
import { statSync } from "node:fs";
import type { BuildContext } from "../core/context.ts";
import { SessionSlot } from "../core/build-session.ts";

const ANSWERS = new SessionSlot(() => new Map<string, { stamp: string; answer: Promise<unknown> }>());

/** `compute()` for `file`, or null when the file is missing. */
export function whileUnchanged<T>(
  ctx: Pick<BuildContext, "session">,
  file: string,
  compute: () => Promise<T>,
): Promise<T> | null {
  const answers = ctx.session.get(ANSWERS);
  let stamp: string;
  try {
    const stats = statSync(file);
    stamp = `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
  } catch {
    answers.delete(file);
    return null;
  }
  const known = answers.get(file);
  if (known?.stamp === stamp) return known.answer as Promise<T>;
  const answer = compute();
  answers.set(file, { stamp, answer });
  return answer;
}
