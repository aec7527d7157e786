// Waits until systemd, PID 1 in the container, has finished booting. Done
// by polling rather than with a testcontainers wait strategy: systemd writes
// nothing to the container's log, so a log-message wait never fires.
import type { StartedTestContainer } from "testcontainers";

/** `degraded` still means booted: the failed units are returned so the caller can show them. */
export type BootOutcome = { state: "running" } | { state: "degraded"; failedUnits: string };

// States from which the boot goes on by itself; anything else is final.
// `offline` is what systemctl says before PID 1 has created /run/systemd/system.
const BOOTING = new Set(["initializing", "starting", "offline", ""]);
const POLL_MS = 200;

export async function waitForSystemd(container: StartedTestContainer, timeoutMs: number): Promise<BootOutcome> {
  const deadline = Date.now() + timeoutMs;
  let state = "";
  while (Date.now() < deadline) {
    state = await readSystemState(container);
    if (state === "running") return { state };
    if (state === "degraded") return { state, failedUnits: await describeFailedUnits(container) };
    if (!BOOTING.has(state)) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const why =
    Date.now() >= deadline ? `did not finish booting within ${timeoutMs / 1000} s` : `went to state "${state}"`;
  throw new Error(
    `systemd in container ${container.getId().slice(0, 12)} ${why} (last state: "${state || "no answer"}")\n` +
      `${await describeFailedUnits(container)}\n${await run(container, ["systemctl", "list-jobs", "--no-pager"])}`,
  );
}

async function readSystemState(container: StartedTestContainer): Promise<string> {
  // Before systemd listens on its socket, systemctl fails with
  // "Failed to connect to bus"; that is still booting, not an answer.
  const { exitCode, stdout } = await container.exec(["systemctl", "is-system-running"]);
  const state = stdout.trim();
  return exitCode === 0 || /^[a-z-]+$/.test(state) ? state : "";
}

async function describeFailedUnits(container: StartedTestContainer): Promise<string> {
  return run(container, ["systemctl", "--failed", "--no-pager", "--no-legend", "--plain"]).then(
    (out) => `failed units:\n${out.trim() || "(none)"}`,
  );
}

async function run(container: StartedTestContainer, command: string[]): Promise<string> {
  const { stdout, stderr } = await container
    .exec(command)
    .catch((error: unknown) => ({ stdout: "", stderr: String(error) }));
  return `${stdout}${stderr}`;
}
