import { afterEach, describe, expect, it, vi } from "vitest";
import { formatBytes, formatDuration, startHeartbeat } from "./progress.ts";

describe("formatDuration and formatBytes", () => {
  it("read as a person would say them", () => {
    expect([400, 4_240, 42_400, 185_000].map(formatDuration)).toEqual(["0.4 s", "4.2 s", "42 s", "3 min 5 s"]);
    expect([512, 9_496, 31_020_000, 2_500_000_000].map(formatBytes)).toEqual(["512 B", "9.5 kB", "31.0 MB", "2.50 GB"]);
  });
});

describe("startHeartbeat", () => {
  afterEach(() => vi.useRealTimers());

  it("says the command runs, its elapsed time every interval, and how long it took", () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const beat = startHeartbeat(
      { info: (m) => lines.push(m), debug: () => {} },
      "npm install @openai/codex@0.169.0",
      10_000,
    );
    vi.advanceTimersByTime(27_000);
    beat.stop("done");
    vi.advanceTimersByTime(30_000);
    expect(lines).toEqual([
      "npm install @openai/codex@0.169.0",
      "npm install @openai/codex@0.169.0: 10 s",
      "npm install @openai/codex@0.169.0: 20 s",
      "npm install @openai/codex@0.169.0: done in 27 s",
    ]);
  });

  it("prints no elapsed lines with an interval of 0, and says when the command failed", () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const beat = startHeartbeat({ info: (m) => lines.push(m), debug: () => {} }, "apt-get install", 0);
    vi.advanceTimersByTime(4_200);
    beat.stop("failed");
    expect(lines).toEqual(["apt-get install", "apt-get install: failed after 4.2 s"]);
  });

  it("leaves the done line to the stage that takes work done in the background (quietDone), but still says a failure", () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const log = { info: (m: string) => lines.push(m), debug: () => {} };
    startHeartbeat(log, "npm install t3@0.0.26", 0, { quietDone: true }).stop("done");
    startHeartbeat(log, "npm install t3@0.0.27", 0, { quietDone: true }).stop("failed");
    expect(lines).toEqual([
      "npm install t3@0.0.26",
      "npm install t3@0.0.27",
      "npm install t3@0.0.27: failed after 0.0 s",
    ]);
  });
});
