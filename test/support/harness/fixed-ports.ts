// The container tests share the host's network, and a built devvm listens on
// fixed ports (t3-dispatch on 3780, the t3-serve@ instances from 3773): two
// boxes at once would take each other's. So a box runs only while its test
// holds this lock; everything else (the unit tests, the image build on the
// host) runs beside it.
//
//   await using ports = await holdFixedPorts("test/users.test.ts");
//
// flock(1) holds the lock in a child process that lives only as long as the
// test's process: if vitest is killed, the kernel frees the lock with it.
// Another file than the one `flock /tmp/devvm-slow.lock` holds for a whole
// run, which this must not wait for.
import { spawn } from "node:child_process";
import { once } from "node:events";

const LOCK_FILE = "/tmp/devvm-fixed-ports.lock";

export interface FixedPorts extends AsyncDisposable {
  release(): Promise<void>;
}

/** Waits until no other test holds the fixed ports, then holds them until release. */
export async function holdFixedPorts(holder: string): Promise<FixedPorts> {
  const started = Date.now();
  // tail --pid: the holder ends (and the lock with it) when this process does.
  const child = spawn(
    "flock",
    ["--exclusive", LOCK_FILE, "sh", "-c", `echo held; exec tail --pid=${process.pid} -f /dev/null`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = once(child, "exit");
  const held = new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("error", reject);
    exited.then(([code]) => reject(new Error(`flock ${LOCK_FILE} exited with ${String(code)} before holding it`)));
  });
  await held;
  const waited = Date.now() - started;
  if (waited > 1000) process.stderr.write(`${holder}: waited ${(waited / 1000).toFixed(0)} s for the fixed ports\n`);
  const release = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    await exited;
  };
  return { release, [Symbol.asyncDispose]: release };
}
