// report.json: what one build did, stage by stage, and with which inputs
// and builder. Unlike the manifest it has times in it.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { StageResult } from "../core/stage.ts";

export const REPORT_VERSION = 1;

export interface Report {
  reportVersion: number;
  builder: { version: string; commit: string };
  mode: "apply" | "plan";
  root: string;
  finishedAt: string;
  inputs: Record<string, string>;
  stages: StageResult[];
  outcome: "ok" | "failed" | "changes-pending";
}

/** The builder's version and commit, read from files: no git process, it must stay fast. */
export function builderIdentity(repoDir: string): Report["builder"] {
  const read = (file: string) => {
    try {
      return readFileSync(path.join(repoDir, file), "utf8").trim();
    } catch {
      return undefined;
    }
  };
  const version = (JSON.parse(read("package.json") ?? "{}") as { version?: string }).version ?? "unknown";
  return { version, commit: gitCommit(read) ?? read("BUILDER_COMMIT") ?? "unknown" };
}

function gitCommit(read: (file: string) => string | undefined): string | undefined {
  const head = read(".git/HEAD");
  if (!head) return undefined;
  const ref = /^ref: (.+)$/.exec(head)?.[1];
  if (!ref) return head;
  return read(`.git/${ref}`) ?? read(".git/packed-refs")?.split("\n").find((l) => l.endsWith(` ${ref}`))?.split(" ")[0];
}
