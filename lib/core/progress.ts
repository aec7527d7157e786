// Progress lines for long work (apt, downloads, npm): how often they are
// printed and how sizes and times read. A build prints a line every few
// seconds at most, never a flood.
import type { Logger } from "./context.ts";

/** How often each kind of progress line may be printed; tests shorten these. */
export const progressIntervals = {
  /** apt's download and install progress. */
  aptMs: 3_000,
  /** Bytes of a download. */
  downloadMs: 5_000,
  /** Elapsed time of a command that says nothing itself (npm install, apt-get update). */
  heartbeatMs: 10_000,
};

/** 0.4 s, 4.2 s, 42 s, 3 min 5 s. */
export function formatDuration(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** 512 B, 9.5 kB, 31.0 MB (decimal units, as apt and npm print them). */
export function formatBytes(bytes: number): string {
  if (bytes < 1e3) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

export interface Heartbeat {
  /** Prints `label: done in 4.2 s` (or `failed after`) and stops the timer. */
  stop(outcome: "done" | "failed"): void;
}

/**
 * Says a silent command runs: `label` now, `label: 20 s` every `everyMs`
 * (none when 0), and how long it took when stopped (unless `quietDone`:
 * work in the background, whose stage says it when it takes the work over).
 */
export function startHeartbeat(
  log: Logger,
  label: string,
  everyMs = progressIntervals.heartbeatMs,
  { quietDone = false } = {},
): Heartbeat {
  const started = Date.now();
  const elapsed = () => formatDuration(Date.now() - started);
  log.info(label);
  const timer = everyMs > 0 ? setInterval(() => log.info(`${label}: ${elapsed()}`), everyMs) : undefined;
  timer?.unref();
  return {
    stop(outcome) {
      clearInterval(timer);
      if (outcome === "failed") log.info(`${label}: failed after ${elapsed()}`);
      else if (!quietDone) log.info(`${label}: done in ${elapsed()}`);
    },
  };
}
