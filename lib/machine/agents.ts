// Is someone working in a t3 instance right now? The real t3 runs each
// conversation's agent (claude, codex, opencode) as a child of its server,
// so an agent process under the unit is someone's turn in progress: a
// restart would kill it (docs/devvm.md stage 5 and "t3 stays up").
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { systemctl } from "./systemd.ts";

// A session of one of these under an instance is someone's work in progress.
const AGENT = /^(claude|codex|opencode)([-.].*)?$/;

/** Agent processes (name and pid) in the unit's cgroup, else among its main process's descendants. */
export async function agentsUnder(ctx: BuildContext, unit: string): Promise<string[]> {
  const shown = (await systemctl(ctx, ["show", "-p", "MainPID", "-p", "ControlGroup", unit])).stdout;
  const prop = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(shown)?.[1] ?? "";
  let pids = readLines(`/sys/fs/cgroup${prop("ControlGroup")}/cgroup.procs`);
  if (pids.length === 0 && Number(prop("MainPID")) > 0) pids = descendants(prop("MainPID"));
  return pids.flatMap((pid) => {
    const argv = readFileSafe(`/proc/${pid}/cmdline`)
      .split("\0")
      .slice(0, 2)
      .map((a) => path.basename(a));
    const names = [readFileSafe(`/proc/${pid}/comm`).trim(), ...argv];
    const agent = names.find((n) => AGENT.test(n));
    return agent ? [`${agent} pid ${pid}`] : [];
  });
}

function descendants(pid: string): string[] {
  const tasks = existsSync(`/proc/${pid}/task`) ? readdirSync(`/proc/${pid}/task`) : [];
  const children = tasks.flatMap((t) => readFileSafe(`/proc/${pid}/task/${t}/children`).split(/\s+/).filter(Boolean));
  return [pid, ...children.flatMap(descendants)];
}

const readFileSafe = (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
};
const readLines = (file: string) => readFileSafe(file).split("\n").filter(Boolean);
