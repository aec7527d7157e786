// The plain files this project installs live under files/; stages read them
// from here so that nothing on the box is ever copied by hand.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "./context.ts";

export function repoFile(ctx: Pick<BuildContext, "repoDir">, relative: string): Buffer {
  return readFileSync(path.join(ctx.repoDir, "files", relative));
}
