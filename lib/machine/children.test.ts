import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { endOrphans, recordChildrenIn, stopRecordingChildren } from "./children.ts";
import { run } from "./exec.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";

const log = { info: () => {}, debug: () => {} };
const alive = (pid: number) =>
  existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
const startOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19]);

afterEach(() => stopRecordingChildren());

describe("children of a build", () => {
  it("are recorded, each as the leader of a group of its own, while they run, and dropped when they end", async () => {
    using root = makeTestRoot();
    const record = path.join(root.dir, "children.json");
    recordChildrenIn(record);
    const running = run({ log }, "sh", ["-c", "sleep 0.5"]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { groups } = JSON.parse(readFileSync(record, "utf8")) as { groups: Array<{ pid: number; start: number }> };
    expect(groups).toHaveLength(1);
    const [group] = groups;
    expect(Number(readFileSync(`/proc/${group!.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2])).toBe(group!.pid);
    await running;
    expect(JSON.parse(readFileSync(record, "utf8"))).toEqual({ builder: process.pid, groups: [] });
    stopRecordingChildren();
    expect(existsSync(record)).toBe(false);
  });

  it("a timeout ends the command's whole group, not only the command", async () => {
    // A duration no other process on this machine sleeps, to find them by.
    const duration = `30.${process.pid}`;
    await expect(
      run({ log }, "sh", ["-c", `sleep ${duration} & sleep ${duration}`], { timeoutMs: 300 }),
    ).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const left = (
      await run({ log }, "sh", ["-c", `ps -eo args | grep -c '^sleep ${duration}$' || true`])
    ).stdout.trim();
    expect(left).toBe("0");
  });

  it("left by a killed build are ended by the next one, which names them; a reused pid is left alone", async () => {
    using root = makeTestRoot();
    const record = path.join(root.dir, "children.json");
    // A group as a build leaves it: the leader and a child of its own, still running after the build died.
    const duration = `30.${process.pid}`;
    const orphan = spawn("sh", ["-c", `sleep ${duration} & wait`], { detached: true, stdio: "ignore" });
    const unrelated = spawn("sleep", [duration], { detached: true, stdio: "ignore" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    writeFileSync(
      record,
      JSON.stringify({
        builder: 1,
        groups: [
          { pid: orphan.pid, start: startOf(orphan.pid!) },
          // The same pid number recorded long before this process started: not ours.
          { pid: unrelated.pid, start: startOf(unrelated.pid!) + 1_000_000 },
        ],
      }),
    );
    try {
      const ended = await endOrphans(record, 1000);
      const leader = `pid ${orphan.pid} (sh -c sleep ${duration} & wait)`;
      expect(ended).toHaveLength(2);
      expect(ended).toContain(leader);
      expect(ended.find((e) => e !== leader)).toMatch(
        new RegExp(`^pid \\d+ \\(sleep ${duration.replace(".", "\\.")}\\)$`),
      );
      expect(alive(orphan.pid!)).toBe(false);
      expect(alive(unrelated.pid!)).toBe(true);
      expect(existsSync(record)).toBe(false);
    } finally {
      for (const pid of [-orphan.pid!, unrelated.pid!]) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // ended by the test
        }
      }
    }
  });
});
