import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { dpkgLockHolder, repairDpkg, waitForDpkgLock } from "./dpkg.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";

/** Holds a lock on `file` the way another program would, until killed. */
async function holdLock(file: string) {
  // Its own group: the sleep inherits the locked file, so both are killed.
  const holder = spawn("flock", [file, "sleep", "30"], { stdio: "ignore", detached: true });
  for (let i = 0; i < 50 && !dpkgLockHolder([file]); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  return holder;
}

describe("dpkg's lock", () => {
  it("names the process that holds it, from the kernel's table of locks", async () => {
    using root = makeTestRoot();
    const file = path.join(root.dir, "lock-frontend");
    writeFileSync(file, "");
    expect(dpkgLockHolder([file])).toBeNull();
    const holder = await holdLock(file);
    try {
      expect(dpkgLockHolder([file])).toBe(`pid ${holder.pid} (flock ${file} sleep 30)`);
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
    }
  });

  it("waits for it with one message, and gives up after the bound naming the holder", async () => {
    using root = makeTestRoot();
    const file = path.join(root.dir, "lock");
    writeFileSync(file, "");
    const holder = await holdLock(file);
    const lines: string[] = [];
    const log = { info: (line: string) => lines.push(line), debug: () => {} };
    try {
      await expect(waitForDpkgLock({ log }, 1500, [file])).rejects.toThrow(
        `dpkg's lock is held by pid ${holder.pid} (flock ${file} sleep 30) and was not released within 2 s`,
      );
      expect(lines).toEqual([
        `waiting (at most 2 s) for dpkg's lock, held by pid ${holder.pid} (flock ${file} sleep 30)`,
      ]);
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
    }
  });

  it("goes on as soon as the holder is gone", async () => {
    using root = makeTestRoot();
    const file = path.join(root.dir, "lock");
    writeFileSync(file, "");
    const holder = await holdLock(file);
    setTimeout(() => process.kill(-holder.pid!, "SIGKILL"), 300);
    const log = { info: () => {}, debug: () => {} };
    const started = Date.now();
    await waitForDpkgLock({ log }, 10_000, [file]);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

// A fake dpkg and apt-get on PATH: `dpkg --audit` prints what the file audit
// holds, `apt-get check` exits with check.code; dpkg --configure -a clears
// the audit unless configure-fixes is missing, apt-get -f install unless
// install-fixes is.
const FAKES: Record<string, string> = {
  dpkg: `#!/bin/sh
echo "dpkg $*" >> "$FAKE/calls"
case "$1" in
  --audit) cat "$FAKE/audit"; [ -s "$FAKE/audit" ] && exit 1; exit 0;;
  --configure) [ -e "$FAKE/configure-fixes" ] && : > "$FAKE/audit"; exit 0;;
esac
`,
  "apt-get": `#!/bin/sh
echo "apt-get $*" >> "$FAKE/calls"
case "$1" in
  check) exit "$(cat "$FAKE/check.code")";;
  -f) [ -e "$FAKE/install-fixes" ] && : > "$FAKE/audit" && echo 0 > "$FAKE/check.code"; exit 0;;
esac
`,
};

describe("repairing an interrupted dpkg", () => {
  afterEach(() => vi.unstubAllEnvs());

  function fakeDpkg(
    dir: string,
    state: { audit: string; check: number; configureFixes?: boolean; installFixes?: boolean },
  ) {
    const fake = path.join(dir, "fake");
    mkdirSync(fake);
    for (const [name, script] of Object.entries(FAKES)) {
      writeFileSync(path.join(fake, name), script);
      chmodSync(path.join(fake, name), 0o755);
    }
    writeFileSync(path.join(fake, "audit"), state.audit);
    writeFileSync(path.join(fake, "check.code"), String(state.check));
    if (state.configureFixes) writeFileSync(path.join(fake, "configure-fixes"), "");
    if (state.installFixes) writeFileSync(path.join(fake, "install-fixes"), "");
    vi.stubEnv("PATH", `${fake}:${process.env.PATH}`);
    vi.stubEnv("FAKE", fake);
    const lines: string[] = [];
    const calls = () =>
      existsSync(path.join(fake, "calls")) ? readFileSync(path.join(fake, "calls"), "utf8").trim().split("\n") : [];
    return { log: { info: (line: string) => lines.push(line), debug: () => {} }, lines, calls };
  }

  const HALF =
    "The following packages are only half configured, probably due to problems\nconfiguring them the first time.\n golang-1.19-go";

  it("stops after dpkg --configure -a when that leaves nothing broken", async () => {
    using root = makeTestRoot();
    const fake = fakeDpkg(root.dir, { audit: HALF, check: 0, configureFixes: true });
    await repairDpkg({ log: fake.log }, "dpkg was interrupted", 1000);
    expect(fake.calls()).toEqual([
      "dpkg --configure -a --force-confdef --force-confold",
      "dpkg --audit",
      "apt-get check -q",
    ]);
    expect(fake.lines[0]).toBe("dpkg was interrupted: repairing it with dpkg --configure -a");
  });

  it("runs apt-get -f install, saying so, when packages are still broken after dpkg --configure -a", async () => {
    using root = makeTestRoot();
    const fake = fakeDpkg(root.dir, { audit: "", check: 100, installFixes: true });
    await repairDpkg({ log: fake.log }, "dpkg was interrupted", 1000);
    expect(fake.calls()).toContain(
      "apt-get -f install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Dpkg::Use-Pty=0",
    );
    expect(fake.lines).toContain("dpkg still reports broken packages: apt-get -f install");
  });

  it("fails naming what dpkg --audit still finds when neither repairs it", async () => {
    using root = makeTestRoot();
    const fake = fakeDpkg(root.dir, { audit: HALF, check: 100 });
    await expect(repairDpkg({ log: fake.log }, "dpkg was interrupted", 1000)).rejects.toThrow(
      /^dpkg is still not consistent after dpkg --configure -a and apt-get -f install:\n.*\n.*\n golang-1\.19-go$/,
    );
  });
});
