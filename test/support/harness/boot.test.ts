// The container the other container tests build on: boots a fresh Debian 12
// with systemd as PID 1, and can run this project's code inside it.
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { BUILDER_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./copy-project.ts";
import { startDevvm } from "./devvm-container.ts";

const projectDir = fileURLToPath(new URL("../../..", import.meta.url));

describe("devvm container", () => {
  it("boots Debian 12 with systemd as PID 1 and runs the project's code", async () => {
    await using vm = await startDevvm();

    expect((await vm.exec("systemctl is-system-running")).stdout.trim()).toBe("running");
    expect((await vm.readFile("/proc/1/comm")).trim()).toBe("systemd");
    expect(await vm.readFile("/etc/os-release")).toMatch(/^VERSION_CODENAME=bookworm$/m);
    // The base image is a fresh VM: what the builder installs is not there yet.
    expect((await vm.exec("command -v curl; command -v git")).stdout).toBe("");
    expect(await vm.stat("/etc/passwd")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });

    await vm.copyProject(projectDir);

    // No history and no node_modules: the box runs the builder's bundle, which needs neither.
    for (const left of [".git", "node_modules"])
      expect(await vm.stat(`${PROJECT_DIR_IN_CONTAINER}/${left}`).catch(() => "absent"), left).toBe("absent");
    const list = await vm.exec([...BUILDER_IN_CONTAINER, "--list"], {
      workingDir: PROJECT_DIR_IN_CONTAINER,
      check: true,
    });
    expect(list.stdout).toMatch(/^preflight\s+Refuses/m);
  });
});
