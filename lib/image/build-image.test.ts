import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { processRuns } from "../machine/leftovers.ts";
import { deadPid, makeTestRoot } from "../../test/support/test-context.ts";
import { removeKilledRuns } from "./build-image.ts";

/** The kernel's start time of a process (field 22 of /proc/PID/stat), as lib/machine/children.ts records it. */
function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
}

describe("an image build killed half-way", () => {
  it("has its processes ended and its work folder removed by the next run; a running build's folder is left alone", async () => {
    using root = makeTestRoot();
    const dead = deadPid();
    // As a killed run leaves it: the build inside the root still running, in a process group of its own.
    const inside = spawn("sleep", ["600"], { detached: true, stdio: "ignore" });
    const killed = path.join(root.dir, `.image-work-${dead}-abc`);
    mkdirSync(path.join(killed, "root/var/tmp"), { recursive: true });
    writeFileSync(
      path.join(killed, "children.json"),
      JSON.stringify({ builder: dead, groups: [{ pid: inside.pid, start: startTime(inside.pid!) }] }),
    );
    const running = path.join(root.dir, `.image-work-${process.pid}-def`);
    mkdirSync(running);
    const exited = new Promise((resolve) => inside.on("exit", resolve));
    const lines: string[] = [];
    await removeKilledRuns(root.dir, { info: (l) => lines.push(l), debug: () => {} });
    await exited;
    expect(processRuns(inside.pid!)).toBe(false);
    expect(readdirSync(root.dir)).toEqual([path.basename(running)]);
    expect(lines).toEqual([
      `ended 1 process(es) of a killed image build: pid ${inside.pid} (sleep 600)`,
      `removed 1 image work folder(s) a killed build left in ${root.dir}`,
    ]);
  });
});
