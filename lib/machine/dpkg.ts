// dpkg after a crash, and dpkg's lock held by someone else. A build killed
// during `dpkg --unpack` leaves dpkg "interrupted": every later apt-get
// refuses until `dpkg --configure -a` runs. Another package manager (an
// admin's apt, unattended-upgrades) holding dpkg's lock is waited for, a
// bounded time, and named when the wait ends.
import { readdirSync, readFileSync, statSync } from "node:fs";
import type { BuildContext } from "../core/context.ts";
import { tail, UserError } from "../core/errors.ts";
import { APT_ENV } from "./apt-update.ts";
import { run } from "./exec.ts";

/** For every apt-get that runs dpkg: old configuration files kept, and dpkg in apt-get's process group (no pty: stages/apt.ts). */
export const DPKG_OPTIONS = [
  "-o",
  "Dpkg::Options::=--force-confdef",
  "-o",
  "Dpkg::Options::=--force-confold",
  "-o",
  "Dpkg::Use-Pty=0",
];
/** The journal dpkg keeps while it works; left non-empty, dpkg was interrupted. */
const UPDATES_DIR = "/var/lib/dpkg/updates";
const LOCKS = ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"];
export const DPKG_LOCK_WAIT_MS = 120_000;

/** Cheap (one folder read), for a no-op run's check: did a killed dpkg leave its journal? */
export function dpkgJournalLeft(): boolean {
  try {
    return readdirSync(UPDATES_DIR).some((name) => /^\d+$/.test(name));
  } catch {
    return false;
  }
}

/** What `dpkg --audit` finds wrong (packages half-installed or half-configured), or "" when nothing. */
export async function dpkgAudit(ctx: Pick<BuildContext, "log">): Promise<string> {
  // dpkg 1.21 exits 1 when it finds something.
  const audit = await run(ctx, "dpkg", ["--audit"], { env: APT_ENV, okCodes: [1] });
  return audit.stdout.trim();
}

/** Repairs an interrupted dpkg: `dpkg --configure -a`, then `apt-get -f install` when packages are still broken. */
export async function repairDpkg(
  ctx: Pick<BuildContext, "log">,
  reason: string,
  lockWaitMs = DPKG_LOCK_WAIT_MS,
): Promise<void> {
  ctx.log.info(`${reason}: repairing it with dpkg --configure -a`);
  await waitForDpkgLock(ctx, lockWaitMs);
  await run(ctx, "dpkg", ["--configure", "-a", "--force-confdef", "--force-confold"], {
    env: APT_ENV,
    heartbeat: { label: "dpkg --configure -a" },
  });
  const left = await dpkgAudit(ctx);
  const broken = await run(ctx, "apt-get", ["check", "-q"], { env: APT_ENV, okCodes: [100] });
  if (left === "" && broken.exitCode === 0) return;
  ctx.log.info("dpkg still reports broken packages: apt-get -f install");
  await run(ctx, "apt-get", ["-f", "install", "-y", "-q", ...DPKG_OPTIONS], {
    env: APT_ENV,
    heartbeat: { label: "apt-get -f install" },
  });
  const still = await dpkgAudit(ctx);
  if (still !== "")
    throw new UserError(
      `dpkg is still not consistent after dpkg --configure -a and apt-get -f install:\n${tail(still, 8)}`,
      "look at `dpkg --audit` and fix the packages it names by hand",
    );
}

/** Waits (at most `timeoutMs`) while another process holds dpkg's lock; names it when giving up. */
export async function waitForDpkgLock(
  ctx: Pick<BuildContext, "log">,
  timeoutMs = DPKG_LOCK_WAIT_MS,
  locks = LOCKS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    const holder = dpkgLockHolder(locks);
    if (!holder) return;
    if (Date.now() >= deadline) {
      throw new UserError(
        `dpkg's lock is held by ${holder} and was not released within ${Math.round(timeoutMs / 1000)} s`,
        "let that package manager finish (or stop it), then run the build again",
      );
    }
    if (!said) ctx.log.info(`waiting (at most ${Math.round(timeoutMs / 1000)} s) for dpkg's lock, held by ${holder}`);
    said = true;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Who holds dpkg's lock, from the kernel's table of locks (/proc/locks): "pid 812 (apt-get install ...)". */
export function dpkgLockHolder(locks = LOCKS): string | null {
  const inodes = new Set(
    locks.flatMap((file) => {
      try {
        return [String(statSync(file).ino)];
      } catch {
        return [];
      }
    }),
  );
  let table: string;
  try {
    table = readFileSync("/proc/locks", "utf8");
  } catch {
    return null;
  }
  for (const line of table.split("\n")) {
    // "1: POSIX  ADVISORY  WRITE 812 08:01:1234 0 EOF"; an OFD lock shows pid -1.
    const fields = line.trim().split(/\s+/);
    const [pid, device] = [fields[4], fields[5]];
    if (!pid || !device || fields[3] !== "WRITE") continue;
    if (!inodes.has(device.split(":")[2] ?? "")) continue;
    return pid === "-1" ? "a process (an open file description lock)" : `pid ${pid} (${commandOf(pid)})`;
  }
  return null;
}

function commandOf(pid: string): string {
  try {
    return (
      readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ").slice(0, 120) || "unknown"
    );
  } catch {
    return "gone";
  }
}
