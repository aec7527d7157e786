import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { describeChange } from "../lib/core/change.ts";
import type { UserError } from "../lib/core/errors.ts";
import type { Stage } from "../lib/core/stage.ts";
import { readSettings } from "../lib/inputs/settings.ts";
import { checkThenApply, makeTestRoot, type TestRoot } from "../test/support/test-context.ts";
import containmentStage, {
  DOCKER_SLICE,
  EARLYOOM_DEFAULTS,
  earlyoomArguments,
  PANE_SCOPE_DROP_IN,
  SYSTEM_SLICE_DROP_IN,
  USER_SLICE_DROP_IN,
} from "./containment.ts";
import unitsStage from "./units.ts";

const containment: Stage = containmentStage;
const hasSystemd = spawnSync("systemctl", ["--version"]).status === 0;

// Debian's earlyoom.service, as its package installs it: the arguments come from /etc/default/earlyoom.
const EARLYOOM_UNIT = `[Unit]
Description=Early OOM Daemon
[Service]
EnvironmentFile=-/etc/default/earlyoom
ExecStart=/usr/bin/earlyoom $EARLYOOM_ARGS
[Install]
WantedBy=multi-user.target
`;

function put(root: TestRoot, machinePath: string, content: string, mode = 0o644): void {
  mkdirSync(path.dirname(path.join(root.dir, machinePath)), { recursive: true });
  writeFileSync(path.join(root.dir, machinePath), content, { mode });
}

const read = (root: TestRoot, machinePath: string) => readFileSync(path.join(root.dir, machinePath), "utf8");
// An enablement link points at the machine's path, which this host need not have: the link itself is looked at.
const isLink = (root: TestRoot, machinePath: string) =>
  lstatSync(path.join(root.dir, machinePath), { throwIfNoEntry: false })?.isSymbolicLink() ?? false;

/** A root as the apt stage leaves it: earlyoom's unit in place. */
function rootWithEarlyoom(env: Record<string, string> = {}): TestRoot & { warnings: string[] } {
  const warnings: string[] = [];
  const root = makeTestRoot({ settings: readSettings(env), warnings });
  put(root, "/usr/lib/systemd/system/earlyoom.service", EARLYOOM_UNIT);
  return Object.assign(root, { warnings });
}

async function described(root: TestRoot): Promise<string[]> {
  const check = await containment.check(root.ctx);
  if ("skip" in check) throw new Error(check.skip);
  return check.changes.map(describeChange);
}

describe.skipIf(!hasSystemd)("containment under --root", () => {
  it("writes the drop-ins with the default shares of memory and earlyoom's arguments, enables earlyoom, then has nothing to do", async () => {
    using root = rootWithEarlyoom();
    await checkThenApply(containment, root.ctx);
    expect(read(root, USER_SLICE_DROP_IN)).toMatch(
      /^\[Slice\]\nMemoryAccounting=yes\nCPUAccounting=yes\nIOAccounting=yes\nMemoryHigh=infinity\nMemoryMax=77%\nMemorySwapMax=0\nCPUWeight=100\nIOWeight=100\n$/m,
    );
    expect(read(root, SYSTEM_SLICE_DROP_IN)).toMatch(/^\[Slice\]\nCPUWeight=200\nIOWeight=200\n$/m);
    expect(read(root, PANE_SCOPE_DROP_IN)).toMatch(/^\[Scope\]\nMemoryMax=20%\nOOMPolicy=continue\n$/m);
    // No Docker here: neither its slice nor its settings.
    expect(existsSync(path.join(root.dir, DOCKER_SLICE))).toBe(false);
    expect(existsSync(path.join(root.dir, "etc/docker"))).toBe(false);
    expect(readlinkSync(path.join(root.dir, "etc/systemd/system/multi-user.target.wants/earlyoom.service"))).toBe(
      "/usr/lib/systemd/system/earlyoom.service",
    );
    expect(await described(root)).toEqual([]);
  });

  it("writes /etc/default/earlyoom as docs/devvm.md gives it: one line, [.] for the version, no quote inside", async () => {
    using root = rootWithEarlyoom();
    await checkThenApply(containment, root.ctx);
    const defaults = read(root, EARLYOOM_DEFAULTS);
    const lines = defaults.split("\n").filter((line) => line && !line.startsWith("#"));
    expect(lines).toEqual([
      'EARLYOOM_ARGS="-m 5,3 -s 100,100 -r 3600 --avoid ^(systemd|systemd-.*|sshd|dockerd|containerd|init|t3-dispatch|tmux.*)$ --prefer ^(python3|node|chrome|chromium|ugrep|rg|go|[0-9]+[.][0-9]+[.][0-9]+)$"',
    ]);
    // What earlyoom.service runs: the value split at spaces, as systemd expands an unquoted $VAR.
    const args = earlyoomArguments(defaults);
    expect(args).toEqual([
      "-m",
      "5,3",
      "-s",
      "100,100",
      "-r",
      "3600",
      "--avoid",
      "^(systemd|systemd-.*|sshd|dockerd|containerd|init|t3-dispatch|tmux.*)$",
      "--prefer",
      "^(python3|node|chrome|chromium|ugrep|rg|go|[0-9]+[.][0-9]+[.][0-9]+)$",
    ]);
    const prefer = new RegExp(args[9]!);
    const avoid = new RegExp(args[7]!);
    // Claude's search tools run under Claude's version as their name; claude itself is in neither list.
    expect(["2.1.232", "rg", "node", "python3"].every((name) => prefer.test(name))).toBe(true);
    expect(["claude", "2x1y232", "bash"].some((name) => prefer.test(name))).toBe(false);
    expect(["systemd", "systemd-journald", "sshd", "t3-dispatch", "tmux: server"].every((n) => avoid.test(n))).toBe(
      true,
    );
    expect(avoid.test("claude")).toBe(false);
  });

  it("fills the caps an admin sets, and t3-serve@.service takes the user's cap too", async () => {
    const env = { DEVVM_USER_MEMORY_MAX: "128M", DEVVM_PANE_MEMORY_MAX: "64M", DEVVM_DOCKER_MEMORY_MAX: "12.5%" };
    using root = rootWithEarlyoom(env);
    put(root, "/usr/bin/dockerd", "#!/bin/sh\n", 0o755);
    await checkThenApply(containment, root.ctx);
    expect(read(root, USER_SLICE_DROP_IN)).toMatch(/^MemoryMax=128M$/m);
    expect(read(root, PANE_SCOPE_DROP_IN)).toMatch(/^MemoryMax=64M$/m);
    expect(read(root, DOCKER_SLICE)).toMatch(/^MemoryMax=12\.5%\nMemorySwapMax=0\nCPUWeight=100\nIOWeight=100$/m);
    for (const name of ["node", "t3", "t3-state-backup", "tmux-persist"])
      put(root, `/usr/local/bin/${name}`, "#!/bin/sh\n", 0o755);
    await checkThenApply(unitsStage, root.ctx);
    expect(read(root, "/etc/systemd/system/t3-serve@.service")).toMatch(
      /^MemoryHigh=infinity\nMemoryMax=128M\nMemorySwapMax=0\nOOMPolicy=continue$/m,
    );
  });

  it("merges cgroup-parent into Docker's daemon.json, keeping the admin's keys, where Docker is installed", async () => {
    using root = rootWithEarlyoom();
    put(root, "/usr/bin/dockerd", "#!/bin/sh\n", 0o755);
    put(root, "/etc/docker/daemon.json", '{"log-driver": "journald", "live-restore": true}\n');
    const plan = await described(root);
    expect(plan).toContain("update /etc/docker/daemon.json");
    expect(plan).toContain(`create file ${DOCKER_SLICE}`);
    await checkThenApply(containment, root.ctx);
    expect(JSON.parse(read(root, "/etc/docker/daemon.json"))).toEqual({
      "log-driver": "journald",
      "live-restore": true,
      "cgroup-parent": "docker.slice",
    });
    expect(read(root, DOCKER_SLICE)).toMatch(/^\[Slice\]\n(.+\n)*MemoryMax=25%\n/m);
    expect(await described(root)).toEqual([]);
  });

  it("leaves a malformed daemon.json byte for byte, names it, and does the rest", async () => {
    using root = rootWithEarlyoom();
    put(root, "/usr/bin/dockerd", "#!/bin/sh\n", 0o755);
    const broken = '{"log-driver": "journald",}\n';
    put(root, "/etc/docker/daemon.json", broken);
    const changes = await checkThenApply(containment, root.ctx);
    expect(read(root, "/etc/docker/daemon.json")).toBe(broken);
    expect(root.warnings).toEqual([
      expect.stringMatching(
        /^\/etc\/docker\/daemon\.json is left alone: it is not valid JSON \(.+\); Docker's containers stay outside docker\.slice until it is fixed/,
      ),
    ]);
    expect(changes.map(describeChange)).toContain(`create file ${DOCKER_SLICE}`);
    expect(read(root, USER_SLICE_DROP_IN)).toMatch(/^MemoryMax=77%$/m);
  });

  it("replaces the live box's drop-ins in place under their names, the plan showing each, nothing doubled", async () => {
    using root = rootWithEarlyoom();
    // As the live devvm has them: the same names, the real box's absolute sizes, one a MemoryHigh band.
    put(root, USER_SLICE_DROP_IN, "[Slice]\nMemoryHigh=20G\nMemoryMax=24G\n");
    put(root, PANE_SCOPE_DROP_IN, "[Scope]\nMemoryMax=6G\nOOMPolicy=continue\n");
    put(root, EARLYOOM_DEFAULTS, 'EARLYOOM_ARGS="-r 3600"\n');
    const plan = await described(root);
    expect(plan).toEqual(
      expect.arrayContaining([
        `update ${USER_SLICE_DROP_IN}`,
        `update ${PANE_SCOPE_DROP_IN}`,
        `update ${EARLYOOM_DEFAULTS}`,
        `create file ${SYSTEM_SLICE_DROP_IN}`,
      ]),
    );
    await checkThenApply(containment, root.ctx);
    expect(readdirSync(path.join(root.dir, path.dirname(USER_SLICE_DROP_IN)))).toEqual(["50-devvm-resource.conf"]);
    expect(readdirSync(path.join(root.dir, path.dirname(PANE_SCOPE_DROP_IN)))).toEqual(["50-devvm-pane-cap.conf"]);
    expect(read(root, USER_SLICE_DROP_IN)).not.toMatch(/MemoryHigh=20G/);
    expect(root.warnings).toEqual([]);
  });

  it("names another drop-in that sets the same keys, and whether it wins, without touching it", async () => {
    using root = rootWithEarlyoom();
    put(root, "/etc/systemd/system/user-.slice.d/60-old-cap.conf", "[Slice]\nMemoryHigh=20G\nTasksMax=4096\n");
    put(root, "/etc/systemd/user/scope.d/10-first.conf", "[Scope]\nOOMPolicy=stop\n");
    put(root, "/etc/systemd/system/t3-serve@.service.d/override.conf", "[Service]\nMemoryMax=4G\nNice=5\n");
    await checkThenApply(containment, root.ctx);
    expect(root.warnings).toEqual([
      `/etc/systemd/system/user-.slice.d/60-old-cap.conf also sets MemoryHigh and overrides the builder's ${USER_SLICE_DROP_IN}: remove it; the caps are set with DEVVM_USER_MEMORY_MAX, DEVVM_PANE_MEMORY_MAX, DEVVM_DOCKER_MEMORY_MAX (docs/cli.md)`,
      `/etc/systemd/user/scope.d/10-first.conf also sets OOMPolicy and is overridden by the builder's ${PANE_SCOPE_DROP_IN}: remove it; the caps are set with DEVVM_USER_MEMORY_MAX, DEVVM_PANE_MEMORY_MAX, DEVVM_DOCKER_MEMORY_MAX (docs/cli.md)`,
      "/etc/systemd/system/t3-serve@.service.d/override.conf also sets MemoryMax and overrides the builder's /etc/systemd/system/t3-serve@.service: remove it; the caps are set with DEVVM_USER_MEMORY_MAX, DEVVM_PANE_MEMORY_MAX, DEVVM_DOCKER_MEMORY_MAX (docs/cli.md)",
    ]);
    expect(read(root, "/etc/systemd/system/user-.slice.d/60-old-cap.conf")).toBe(
      "[Slice]\nMemoryHigh=20G\nTasksMax=4096\n",
    );
  });

  it("disables systemd-oomd where it is installed and enabled", async () => {
    using root = rootWithEarlyoom();
    put(
      root,
      "/usr/lib/systemd/system/systemd-oomd.service",
      "[Service]\nExecStart=/usr/lib/systemd/systemd-oomd\n[Install]\nWantedBy=multi-user.target\nAlso=systemd-oomd.socket\n",
    );
    put(
      root,
      "/usr/lib/systemd/system/systemd-oomd.socket",
      "[Socket]\nListenStream=/run/systemd/io.systemd.ManagedOOM\n[Install]\nWantedBy=sockets.target\n",
    );
    spawnSync("systemctl", [`--root=${root.dir}`, "enable", "systemd-oomd.service"]);
    expect(isLink(root, "/etc/systemd/system/multi-user.target.wants/systemd-oomd.service")).toBe(true);
    expect(await described(root)).toEqual(
      expect.arrayContaining(["disable systemd-oomd.service", "disable systemd-oomd.socket"]),
    );
    await checkThenApply(containment, root.ctx);
    expect(isLink(root, "/etc/systemd/system/multi-user.target.wants/systemd-oomd.service")).toBe(false);
    expect(isLink(root, "/etc/systemd/system/sockets.target.wants/systemd-oomd.socket")).toBe(false);
    expect(await described(root)).toEqual([]);
  });

  it("stops before writing anything when earlyoom is not installed, naming the apt stage", async () => {
    using root = makeTestRoot();
    const error = (await containment.check(root.ctx).catch((e: unknown) => e)) as UserError;
    expect(error.message).toBe(
      "earlyoom is not installed (no earlyoom.service in /usr/lib/systemd/system or /lib/systemd/system)",
    );
    expect(error.hint).toMatch(/the apt stage installs it from packages\.txt/);
    expect(existsSync(path.join(root.dir, "etc"))).toBe(false);
  });

  it("under --plan, before the apt stage installed earlyoom (a takeover's first plan), plans it instead of failing", async () => {
    using root = makeTestRoot();
    Object.assign(root.ctx, { planOnly: true });
    const changes = await described(root);
    expect(changes).toEqual(
      expect.arrayContaining([
        "create file /etc/default/earlyoom",
        "enable earlyoom.service",
        "create file /etc/systemd/user/scope.d/50-devvm-pane-cap.conf",
      ]),
    );
    expect(existsSync(path.join(root.dir, "etc"))).toBe(false);
  });
});
