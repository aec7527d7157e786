// The roster the builder last applied, kept on the box, so a user dropped
// from roster.yaml is noticed (and cut) by the next run, and stays cut until
// they return or are offboarded by name.
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { hostPath, type BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import type { FileResource } from "../machine/files.ts";
import { STATE_DIR } from "../machine/layout.ts";

export const APPLIED_ROSTER = `${STATE_DIR}/roster-applied.json`;

const RecordSchema = z.strictObject({
  /** OS users of the roster last applied. */
  users: z.array(z.string()),
  /** Users cut (no longer in the roster, account and home kept) and not yet offboarded. */
  cut: z.array(z.string()),
});
export type AppliedRoster = z.infer<typeof RecordSchema>;

export function readAppliedRoster(ctx: Pick<BuildContext, "root">): AppliedRoster {
  const file = hostPath(ctx, APPLIED_ROSTER);
  if (!existsSync(file)) return { users: [], cut: [] };
  const parsed = RecordSchema.safeParse(
    (() => {
      try {
        return JSON.parse(readFileSync(file, "utf8")) as unknown;
      } catch {
        return undefined;
      }
    })(),
  );
  if (!parsed.success)
    throw new UserError(
      `${APPLIED_ROSTER} is not the builder's record of the applied roster`,
      `repair it ({"users": [...], "cut": [...]}) or remove it (then users dropped since the last build are not cut)`,
    );
  return parsed.data;
}

export function appliedRosterFile(record: AppliedRoster): FileResource {
  const sorted = { users: [...record.users].sort(), cut: [...record.cut].sort() };
  return { kind: "file", path: APPLIED_ROSTER, mode: 0o644, content: `${JSON.stringify(sorted)}\n` };
}
