// A built devvm runs timers of its own. A test that compares what builds
// say or leave must not let the clock decide whether a timer's run falls
// between its two looks.
import type { DevvmContainer } from "./devvm-container.ts";

/**
 * Waits until the box's reconcile (devvm-reconcile.timer: 2 minutes after
 * boot, then hourly) has made its boot-time run and ended: from then on,
 * only the hour brings it back.
 */
export async function waitForBootReconcile(vm: DevvmContainer, timeoutMs = 240_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const shown = await vm.exec([
      "systemctl",
      "show",
      "-p",
      "InactiveExitTimestampMonotonic",
      "-p",
      "ActiveState",
      "devvm-reconcile.service",
    ]);
    const value = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(shown.stdout)?.[1];
    const startedAt = value("InactiveExitTimestampMonotonic");
    const state = value("ActiveState");
    if (startedAt !== undefined && startedAt !== "0" && (state === "inactive" || state === "failed")) return;
    if (Date.now() > deadline)
      throw new Error(`devvm-reconcile.service made no boot-time run within ${timeoutMs / 1000} s: ${shown.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/**
 * Runs the box's tmux save once (tmux-persist-save.timer runs it every 5
 * minutes on the clock): its first run makes /var/lib/tmux-persist, and
 * with no tmux server running, later runs change nothing.
 */
export async function runTmuxSaveOnce(vm: DevvmContainer): Promise<void> {
  const run = await vm.exec("systemctl start tmux-persist-save.service");
  if (run.exitCode !== 0) throw new Error(`tmux-persist-save.service failed: ${run.stderr}`);
}
