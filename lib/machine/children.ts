// No orphans. Every command the builder runs leads a process group of its
// own (spawn's `detached`), recorded with the kernel's start time in a file
// beside the build lock. A build that ends has waited for all of them; one
// that is killed leaves the record behind, and the next build, taking over
// the lock, ends every process still in those groups and says which: an
// apt-get still holding dpkg's lock, a `t3 serve` of a health check
// listening as root. Signals that stop the builder (Ctrl-C, systemctl stop)
// are passed on to the groups before it exits.
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";

interface Group {
  /** The group's leader, whose pid is the group's id. */
  pid: number;
  /** The leader's start time (clock ticks since boot), so a reused pid is never taken for it. */
  start: number;
}

interface ProcessInfo {
  pid: number;
  pgid: number;
  start: number;
  command: string;
}

// Process-wide on purpose, not a build's: the signal handler that passes
// Ctrl-C or systemctl stop on to the groups (build.ts) has no build to ask,
// and every command run anywhere in the process (exec.ts) is tracked here.
let recordFile: string | undefined;
const live = new Map<number, Group>();

/** From now on, the groups of this build are recorded in `file` (preflight calls it once it holds the lock). */
export function recordChildrenIn(file: string): void {
  recordFile = file;
  save();
}

/** At the build's end: ends any group still running (none, normally) and removes the record. */
export function stopRecordingChildren(): void {
  signalChildren("SIGKILL");
  live.clear();
  if (recordFile) rmSync(recordFile, { force: true });
  recordFile = undefined;
}

export function trackChild(pid: number | undefined): void {
  if (pid === undefined) return;
  const info = processInfo(pid);
  live.set(pid, { pid, start: info?.start ?? 0 });
  save();
}

export function untrackChild(pid: number | undefined): void {
  if (pid === undefined || !live.delete(pid)) return;
  save();
}

/** Sends `signal` to every group this build started and still runs. */
export function signalChildren(signal: NodeJS.Signals): void {
  for (const { pid } of live.values()) {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  }
}

function save(): void {
  if (!recordFile) return;
  const temporary = `${recordFile}.tmp`;
  writeFileSync(temporary, `${JSON.stringify({ builder: process.pid, groups: [...live.values()] })}\n`, {
    mode: 0o644,
  });
  renameSync(temporary, recordFile);
}

/**
 * Ends what a killed build left running (the record in `file`): every
 * process of its groups that started after the group did, SIGTERM first,
 * SIGKILL after `graceMs`. Returns what was ended, e.g. "pid 812 (apt-get install ...)".
 */
export async function endOrphans(file: string, graceMs = 5000): Promise<string[]> {
  let groups: Group[];
  try {
    groups = (JSON.parse(readFileSync(file, "utf8")) as { groups: Group[] }).groups;
  } catch {
    return [];
  }
  const orphans = () => {
    const all = processes();
    return all.filter((p) => p.pid !== process.pid && groups.some((g) => p.pgid === g.pid && p.start >= g.start));
  };
  const found = orphans();
  const ended = found.map((p) => `pid ${p.pid} (${p.command.slice(0, 120)})`);
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    for (const p of orphans()) {
      try {
        process.kill(p.pid, signal);
      } catch {
        // gone meanwhile
      }
    }
    const deadline = Date.now() + (signal === "SIGTERM" ? graceMs : 2000);
    while (orphans().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    if (orphans().length === 0) break;
  }
  rmSync(file, { force: true });
  return ended;
}

/** Every process of the machine, from /proc. */
function processes(): ProcessInfo[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      const info = processInfo(Number(name));
      return info ? [info] : [];
    });
}

function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: the fields after it start at the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state): pgrp is field 5, starttime field 22.
    const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    return {
      pid,
      pgid: Number(fields[2]),
      start: Number(fields[19]),
      command: command || stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
    };
  } catch {
    return undefined;
  }
}
