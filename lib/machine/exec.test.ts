import { describe, expect, it } from "vitest";
import { CommandError } from "../core/errors.ts";
import { run } from "./exec.ts";

const log = (lines: string[]) => ({ info: (m: string) => lines.push(m), debug: () => {} });

describe("run", () => {
  it("hands over stdout and fd 3 line by line, and still returns the whole output", async () => {
    const stdout: string[] = [];
    const status: string[] = [];
    const script =
      'echo one; echo "dlstatus:1:0.0000:Retrieving file 1 of 2" >&3; echo two; printf "pmstatus:git:50:Unpacking git (amd64)" >&3; echo oops >&2';
    const result = await run({ log: log([]) }, "bash", ["-c", script], {
      onStdoutLine: (l) => stdout.push(l),
      onStatusLine: (l) => status.push(l),
    });
    expect(stdout).toEqual(["one", "two"]);
    expect(status).toEqual(["dlstatus:1:0.0000:Retrieving file 1 of 2", "pmstatus:git:50:Unpacking git (amd64)"]);
    expect(result).toEqual({ stdout: "one\ntwo\n", stderr: "oops\n", exitCode: 0 });
  });

  it("fails a streamed command as any other: the command, its exit code, its stderr", async () => {
    const lines: string[] = [];
    const failing = run({ log: log(lines) }, "bash", ["-c", "echo E: no mirror >&2; exit 100"], {
      onStdoutLine: () => {},
      heartbeat: { label: "apt-get install", everyMs: 0 },
    });
    await expect(failing).rejects.toThrow(CommandError);
    await expect(failing).rejects.toThrow(/exited with 100:\nE: no mirror/);
    expect(lines).toEqual(["apt-get install", expect.stringMatching(/^apt-get install: failed after \d+\.\d s$/)]);
  });

  it("says a silent command runs and how long it took", async () => {
    const lines: string[] = [];
    await run({ log: log(lines) }, "bash", ["-c", "sleep 0.3"], {
      heartbeat: { label: "npm install x@1.0.0", everyMs: 100 },
    });
    expect(lines[0]).toBe("npm install x@1.0.0");
    expect(lines.slice(1, -1).length).toBeGreaterThanOrEqual(1);
    for (const line of lines.slice(1, -1)) expect(line).toMatch(/^npm install x@1\.0\.0: \d+\.\d s$/);
    expect(lines.at(-1)).toMatch(/^npm install x@1\.0\.0: done in \d+\.\d s$/);
  });

  it("kills a streamed command at its timeout", async () => {
    await expect(run({ log: log([]) }, "sleep", ["10"], { onStdoutLine: () => {}, timeoutMs: 200 })).rejects.toThrow(
      /exited with a signal:\nkilled by SIGTERM/,
    );
  });

  it("ends the command's whole group when its signal aborts (background work at the build's end), and at once when already aborted", async () => {
    const controller = new AbortController();
    const started = Date.now();
    // The shell's child (sleep) is in the group too: the run ends only when nothing holds the pipes.
    const running = run({ log: log([]) }, "bash", ["-c", "sleep 30 & wait"], { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(running).rejects.toThrow(/killed by SIGTERM/);
    await expect(run({ log: log([]) }, "sleep", ["30"], { signal: controller.signal })).rejects.toThrow(
      /killed by SIGTERM/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
