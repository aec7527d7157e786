// A throwaway "fresh VM" for container tests: the base image booted with
// systemd as PID 1, and a handle to run commands and inspect files in it.
//
//   await using vm = await startDevvm();
//   await vm.exec("apt-get update", { check: true });
//
// `await using` stops and removes the container even when the test fails;
// DEVVM_KEEP_CONTAINER=1 keeps it for a look afterwards (its id is logged).
import { GenericContainer, type StartedTestContainer, type WaitStrategy } from "testcontainers";
import { quote } from "zx";
import { CommandError } from "../../../lib/core/errors.ts";
import { ensureBaseImage } from "./base-image.ts";
import { copyProject } from "./copy-project.ts";
import { STAT_FORMAT, parseStat, type FileStat } from "./file-stat.ts";
import { waitForSystemd, type BootOutcome } from "./wait-for-systemd.ts";

export interface StartDevvmOptions {
  /** How long systemd may take to reach `running`; default 60 s. */
  bootTimeoutMs?: number;
  /** The image to boot; default the base image (test/support/harness/base-image.ts). */
  image?: string;
  /** Files put in place before the first boot (as `docker cp` before `docker start`). */
  files?: Array<{ content: string; target: string; mode: number }>;
}

export interface ExecOptions {
  /** Throw a CommandError when the command exits non-zero. */
  check?: boolean;
  user?: string;
  workingDir?: string;
  env?: Record<string, string>;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface DevvmContainer extends AsyncDisposable {
  readonly id: string;
  readonly boot: BootOutcome;
  /** A string runs through `bash -c`; an array runs as is. */
  exec(command: string | string[], options?: ExecOptions): Promise<ExecResult>;
  readFile(path: string): Promise<string>;
  stat(path: string): Promise<FileStat>;
  /** This repository to /opt/devvm-src, the test's node to /opt/devvm-runtime/bin/node. */
  copyProject(projectDir: string): Promise<void>;
  /** One host file into the container, as is (a release archive, say). */
  copyFile(source: string, target: string): Promise<void>;
}

// Lets someone find and remove containers a killed test run left behind:
// docker rm -f $(docker ps -aq --filter label=devvm.test)
const LABEL = "devvm.test";

export async function startDevvm(options: StartDevvmOptions = {}): Promise<DevvmContainer> {
  const image = options.image ?? (await ensureBaseImage());
  const container = await new GenericContainer(image)
    .withCopyContentToContainer(options.files ?? [])
    .withCommand(["/sbin/init"])
    .withLabels({ [LABEL]: "1" })
    // What systemd needs to run as PID 1 here; --privileged does not work
    // on this host, and these are enough.
    .withAddedCapabilities("SYS_ADMIN")
    .withSecurityOpt("seccomp=unconfined")
    .withBindMounts([{ source: "/sys/fs/cgroup", target: "/sys/fs/cgroup", mode: "rw" }])
    .withTmpFs({ "/run": "rw", "/run/lock": "rw" })
    // The builder downloads from the same places the host reaches.
    .withNetworkMode("host")
    .withWaitStrategy(startedIsEnough)
    .start();
  try {
    const boot = await waitForSystemd(container, options.bootTimeoutMs ?? 60_000);
    if (boot.state === "degraded") process.stderr.write(`devvm container booted degraded; ${boot.failedUnits}\n`);
    return createHandle(container, boot);
  } catch (error) {
    // The boot failure is the news; a failure to remove must not hide it.
    await removeContainer(container).catch(() => {});
    throw error;
  }
}

function createHandle(container: StartedTestContainer, boot: BootOutcome): DevvmContainer {
  const exec = async (command: string | string[], options: ExecOptions = {}): Promise<ExecResult> => {
    const argv = typeof command === "string" ? ["bash", "-c", command] : command;
    const { exitCode, stdout, stderr } = await container.exec(argv, {
      ...(options.user && { user: options.user }),
      ...(options.workingDir && { workingDir: options.workingDir }),
      ...(options.env && { env: options.env }),
    });
    if (options.check && exitCode !== 0) {
      throw new CommandError(typeof command === "string" ? command : argv.map(quote).join(" "), exitCode, stderr);
    }
    return { exitCode, stdout, stderr };
  };
  return {
    id: container.getId(),
    boot,
    exec,
    readFile: async (path) => (await exec(["cat", "--", path], { check: true })).stdout,
    stat: async (path) => {
      const stat = parseStat((await exec(["stat", "-c", STAT_FORMAT, "--", path], { check: true })).stdout);
      if (stat.type !== "symlink") return stat;
      return { ...stat, linkTarget: (await exec(["readlink", "--", path], { check: true })).stdout.trim() };
    },
    copyProject: (projectDir) => copyProject(container, projectDir),
    copyFile: (source, target) => container.copyFilesToContainer([{ source, target }]),
    [Symbol.asyncDispose]: () => removeContainer(container),
  };
}

async function removeContainer(container: StartedTestContainer): Promise<void> {
  if (process.env.DEVVM_KEEP_CONTAINER === "1") {
    process.stderr.write(`DEVVM_KEEP_CONTAINER=1: kept container ${container.getId()}\n`);
    return;
  }
  // Killed at once (timeout 0): nothing in a test container needs a clean
  // shutdown, and systemd would ignore docker's SIGTERM anyway.
  await container.stop({ remove: true, timeout: 0 });
}

// The container counts as started as soon as docker says so; waitForSystemd
// then does the real waiting (systemd logs nothing a log wait could match).
const startedIsEnough: WaitStrategy = {
  waitUntilReady: async () => {},
  withStartupTimeout() {
    return this;
  },
  isStartupTimeoutSet: () => false,
  getStartupTimeout: () => 0,
};
