import { spawn, spawnSync } from "node:child_process";
import { lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Change } from "../lib/core/change.ts";
import type { Stage } from "../lib/core/stage.ts";
import { makeTestRoot, type TestRoot } from "../test/support/test-context.ts";
import retireLegacyStage from "./retire-legacy.ts";

const retireLegacy: Stage = retireLegacyStage;
const hasSystemctl = spawnSync("systemctl", ["--version"]).status === 0;

const timer = (what: string) =>
  `[Unit]\nDescription=${what}\n\n[Timer]\nOnCalendar=daily\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n`;
const service = (...execStart: string[]) =>
  `[Unit]\nDescription=old\n\n[Service]\nType=oneshot\n${execStart.map((e) => `ExecStart=${e}\n`).join("")}`;

function write(dir: string, file: string, content: string, mode = 0o644): void {
  mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  writeFileSync(path.join(dir, file), content, { mode });
}

function link(dir: string, file: string, target: string): void {
  mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  symlinkSync(target, path.join(dir, file));
}

/** The live devvm as the old scripts left it, beside some of the builder's own files. */
function legacyBox(dir: string): void {
  const units = "etc/systemd/system";
  for (const unit of ["t3-provision-users", "t3-autoupdate", "t3-backup-state"])
    write(dir, `${units}/${unit}.timer`, timer(unit));
  write(dir, `${units}/t3-provision-users.service`, service("/bin/bash /usr/local/bin/t3-provision-users.sh"));
  write(dir, `${units}/t3-autoupdate.service`, service('+"/usr/local/bin/t3-autoupdate.sh" --channel latest'));
  write(
    dir,
    `${units}/t3-backup-state.service`,
    service("-/usr/local/bin/backup-t3-state", "@/usr/local/bin/t3-state-backup t3-state-backup", "/usr/bin/true"),
  );
  write(dir, `${units}/t3-state-backup.timer`, timer("the builder's backup"));
  write(dir, `${units}/t3-state-backup.service`, service("/usr/local/bin/t3-state-backup"));
  const enable = spawnSync("systemctl", [
    `--root=${dir}`,
    "enable",
    "t3-provision-users.timer",
    "t3-autoupdate.timer",
    "t3-backup-state.timer",
    "t3-state-backup.timer",
  ]);
  expect(enable.status, enable.stderr.toString()).toBe(0);
  // Made by hand once: the service has no [Install] section.
  link(dir, `${units}/multi-user.target.wants/t3-autoupdate.service`, "/etc/systemd/system/t3-autoupdate.service");

  for (const name of [
    "t3-provision-users.sh",
    "t3-autoupdate.sh",
    "backup-t3-state",
    "t3-backup-state",
    "t3-state-backup",
    "t3-mint",
    "other-tool",
  ])
    write(dir, `usr/local/bin/${name}`, "#!/bin/sh\n", 0o755);
  link(dir, "usr/local/bin/t3", "/opt/devvm/npm/t3/0.0.26/bin/t3");
  write(dir, "usr/lib/node_modules/t3/dist/bin.js", "#!/usr/bin/env node\n", 0o755);
  write(dir, "usr/lib/node_modules/t3/package.json", '{"name":"t3","version":"0.0.25"}\n');
  link(dir, "usr/bin/t3", "../lib/node_modules/t3/dist/bin.js");
}

const descriptions = (changes: Change[]) => changes.map((c) => (c.kind === "action" ? c.description : `(${c.kind})`));

async function changesOf(root: TestRoot): Promise<string[]> {
  const check = await retireLegacy.check(root.ctx);
  if ("skip" in check) throw new Error(check.skip);
  return descriptions(check.changes);
}

async function run(root: TestRoot): Promise<string[]> {
  const check = await retireLegacy.check(root.ctx);
  if ("skip" in check) throw new Error(check.skip);
  return descriptions(await retireLegacy.apply(root.ctx, check));
}

function logged(root: TestRoot): { info: string[]; commands: string[] } {
  const lines = { info: [] as string[], commands: [] as string[] };
  Object.assign(root.ctx, {
    log: {
      info: (m: string) => lines.info.push(m),
      debug: (m: string) => m.startsWith("$ ") && lines.commands.push(m),
    },
  });
  return lines;
}

/** Files and links under a folder, relative and sorted (empty folders are left out). */
const filesUnder = (dir: string) =>
  readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => !lstatSync(path.join(dir, name)).isDirectory())
    .sort();

const exists = (root: TestRoot, file: string) =>
  lstatSync(path.join(root.dir, file), { throwIfNoEntry: false }) !== undefined;

const EXPECTED = [
  "disable t3-provision-users.timer (replaced by the builder's users and instances stages, run by devvm-reconcile.timer)",
  "disable t3-autoupdate.timer (replaced by devvm-t3-pin.timer)",
  "disable t3-backup-state.timer (replaced by t3-state-backup.timer)",
  "disable t3-provision-users.service (replaced by the builder's users and instances stages, run by devvm-reconcile.timer)",
  "disable t3-autoupdate.service (replaced by devvm-t3-pin.timer)",
  "disable t3-backup-state.service (replaced by t3-state-backup.timer)",
  "remove /etc/systemd/system/t3-provision-users.timer",
  "remove /etc/systemd/system/t3-autoupdate.timer",
  "remove /etc/systemd/system/t3-backup-state.timer",
  "remove /etc/systemd/system/t3-provision-users.service",
  "remove /etc/systemd/system/t3-autoupdate.service",
  "remove /etc/systemd/system/t3-backup-state.service",
  "remove /usr/local/bin/t3-provision-users.sh (old t3-provision-users's program)",
  "remove /usr/local/bin/t3-autoupdate.sh (old t3-autoupdate's program)",
  "remove /usr/local/bin/backup-t3-state (old t3-backup-state's program)",
  "remove /usr/local/bin/t3-backup-state (old t3-backup-state's program)",
  "remove /usr/bin/t3 (global npm t3 of the old updater)",
  "remove /usr/lib/node_modules/t3 (global npm t3 of the old updater)",
];

describe.skipIf(!hasSystemctl)("retire-legacy under --root", () => {
  it("lists, then removes exactly the old units, their links and programs, and the old global npm t3", async () => {
    using root = makeTestRoot();
    legacyBox(root.dir);
    const lines = logged(root);
    expect(await changesOf(root)).toEqual(EXPECTED);
    expect(await run(root)).toEqual(EXPECTED);

    const unitDir = path.join(root.dir, "etc/systemd/system");
    expect(filesUnder(unitDir)).toEqual([
      "t3-state-backup.service",
      "t3-state-backup.timer",
      "timers.target.wants/t3-state-backup.timer",
    ]);
    expect(readdirSync(path.join(root.dir, "usr/local/bin")).sort()).toEqual([
      "other-tool",
      "t3",
      "t3-mint",
      "t3-state-backup",
    ]);
    expect(exists(root, "usr/bin/t3")).toBe(false);
    expect(exists(root, "usr/lib/node_modules/t3")).toBe(false);
    // Offline: disabled through `systemctl --root`, nothing stopped, no daemon-reload.
    expect(lines.commands).toEqual([
      expect.stringMatching(
        /^\$ systemctl --root=\S+ disable t3-provision-users.timer t3-autoupdate.timer t3-backup-state.timer t3-provision-users.service t3-autoupdate.service t3-backup-state.service$/,
      ),
    ]);

    expect(await changesOf(root)).toEqual([]);
  });

  it("finds nothing on a fresh box, without running a command", async () => {
    using root = makeTestRoot();
    const lines = logged(root);
    expect(await changesOf(root)).toEqual([]);
    mkdirSync(path.join(root.dir, "etc/systemd/system/timers.target.wants"), { recursive: true });
    mkdirSync(path.join(root.dir, "usr/local/bin"), { recursive: true });
    expect(await changesOf(root)).toEqual([]);
    expect(lines).toEqual({ info: [], commands: [] });
  });

  it("removes an enable link left behind without its unit file", async () => {
    using root = makeTestRoot();
    link(
      root.dir,
      "etc/systemd/system/timers.target.wants/t3-autoupdate.timer",
      "/etc/systemd/system/t3-autoupdate.timer",
    );
    expect(await run(root)).toEqual(["disable t3-autoupdate.timer (replaced by devvm-t3-pin.timer)"]);
    expect(readdirSync(path.join(root.dir, "etc/systemd/system/timers.target.wants"))).toEqual([]);
    expect(await changesOf(root)).toEqual([]);
  });

  it("leaves a /usr/bin/t3 that is a file, or a link elsewhere, and the package folder, with a warning", async () => {
    for (const make of [
      (dir: string) => write(dir, "usr/bin/t3", "#!/bin/sh\n", 0o755),
      (dir: string) => link(dir, "usr/bin/t3", "/opt/t3/bin/t3"),
    ]) {
      using root = makeTestRoot();
      make(root.dir);
      write(root.dir, "usr/lib/node_modules/t3/package.json", "{}\n");
      const lines = logged(root);
      expect(await run(root)).toEqual([]);
      expect(exists(root, "usr/bin/t3")).toBe(true);
      expect(exists(root, "usr/lib/node_modules/t3/package.json")).toBe(true);
      expect(lines.info).toEqual([
        expect.stringMatching(
          /^warning: \/usr\/bin\/t3 (is not a symlink|points to \/opt\/t3\/bin\/t3), not the old updater's npm link; left alone/,
        ),
      ]);
    }
  });

  it("removes the link but keeps the package folder while an old t3 still runs from it", async () => {
    using root = makeTestRoot();
    legacyBox(root.dir);
    const running = spawn(
      process.execPath,
      ["-e", "setTimeout(() => {}, 60_000)", path.join(root.dir, "usr/lib/node_modules/t3/dist/bin.js")],
      { stdio: "ignore" },
    );
    try {
      await new Promise((resolve) => running.once("spawn", resolve));
      const lines = logged(root);
      const done = await run(root);
      expect(done).toContain("remove /usr/bin/t3 (global npm t3 of the old updater)");
      expect(done).not.toContain("remove /usr/lib/node_modules/t3 (global npm t3 of the old updater)");
      expect(exists(root, "usr/bin/t3")).toBe(false);
      expect(exists(root, "usr/lib/node_modules/t3/dist/bin.js")).toBe(true);
      expect(lines.info).toContain(
        `/usr/lib/node_modules/t3 is kept until no process uses it (pid ${running.pid}); the next run removes it`,
      );
    } finally {
      running.kill();
      await new Promise((resolve) => running.once("exit", resolve));
    }
    expect(await run(root)).toEqual(["remove /usr/lib/node_modules/t3 (global npm t3 of the old updater)"]);
    expect(exists(root, "usr/lib/node_modules/t3")).toBe(false);
  });
});
