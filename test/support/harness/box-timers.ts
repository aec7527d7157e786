// A built devvm runs timers of its own. A test that compares what builds
// say or leave must not let the clock decide whether a timer's run falls
// between its two looks.
import type { DevvmContainer } from "./devvm-container.ts";

/**
 * Stops the box's reconcile timer, and waits for a run it already started to
 * end: from then on no reconcile runs at a moment the clock chooses, without
 * waiting for the boot-time run (2 minutes after boot) to come and go.
 */
export async function stopReconcileTimer(vm: DevvmContainer, timeoutMs = 120_000): Promise<void> {
  await vm.exec("systemctl stop devvm-reconcile.timer", { check: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = (await vm.exec("systemctl show -P ActiveState devvm-reconcile.service")).stdout.trim();
    if (state === "inactive" || state === "failed") return;
    if (Date.now() > deadline)
      throw new Error(`devvm-reconcile.service still ${state} ${timeoutMs / 1000} s after its timer stopped`);
    await new Promise((resolve) => setTimeout(resolve, 500));
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
