// `build.ts image` (issue 14), run on this host as root with the stand-in
// sources, as an admin would, and its archive checked from outside: what it
// holds and leaves out, then booted as a container (`docker import`), with
// the Vault stand-in for its first boot. Two builds give the same bytes:
// `npm run repro` shows it (nightly), as it takes two image builds.
import { createHash } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import path from "node:path";
import { createGunzip } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { $ } from "zx";
import { readArchive, type ArchiveEntry } from "../lib/image/compare-archives.ts";
import type { ImageRecord } from "../lib/image/build-image.ts";
import { releaseByKey } from "../lib/machine/releases.ts";
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import { startDevvm, type DevvmContainer } from "./support/harness/devvm-container.ts";
import { imageBuild, OAUTH, TOKEN, type ImageBuild } from "./support/harness/image-build.ts";
import type { ImageRun } from "./support/harness/image-on-host.ts";
import type { VaultStandIn } from "./support/stand-ins/vault.ts";
const DISPATCH = "http://127.0.0.1:3780/";
const IMAGE_TAG = `devvm-image-test:${process.pid}`;

/** Whether any of the needles occurs in the archive's uncompressed bytes (headers and contents alike). */
async function archiveContains(file: string, needles: string[]): Promise<string[]> {
  const wanted = needles.map((n) => Buffer.from(n));
  const overlap = Math.max(...wanted.map((w) => w.length));
  const found = new Set<string>();
  let tail = Buffer.alloc(0);
  for await (const chunk of createReadStream(file).pipe(createGunzip()) as AsyncIterable<Buffer>) {
    const window = Buffer.concat([tail, chunk]);
    wanted.forEach((w, i) => window.includes(w) && found.add(needles[i]!));
    tail = window.subarray(Math.max(0, window.length - overlap));
  }
  return [...found];
}

describe("build.ts image", () => {
  let image: ImageBuild | undefined;
  let vault: VaultStandIn;
  let output: string;
  let built: ImageRun;
  let record: ImageRecord;
  let entries: Map<string, ArchiveEntry>;
  let imported: Promise<unknown> | undefined;
  let vm: DevvmContainer | undefined;

  beforeAll(async () => {
    // Started beside the light tests when they run before this file (vitest.config.ts), here otherwise.
    image = await imageBuild();
    ({ vault, output, built } = image);
    if (built.exitCode === 0) {
      record = JSON.parse(await fs.readFile(path.join(output, "out/devvm-image.json"), "utf8")) as ImageRecord;
      const archive = path.join(output, "out", record.archive.file);
      // Docker reads the archive on its own cores while this process reads it: the boot test awaits it.
      imported =
        $`docker import --change ${'CMD ["/sbin/init"]'} --change ${"ENV container=docker"} ${archive} ${IMAGE_TAG}`.quiet();
      imported.catch(() => {});
      entries = await readArchive(archive);
    }
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await imported?.catch(() => {});
    await $({ nothrow: true, quiet: true })`docker image rm -f ${IMAGE_TAG}`;
    await image?.[Symbol.asyncDispose]();
  });

  it("writes the archive and beside it its record: sha256, size, the manifest's sha256, the commit, the inputs' hashes and the release", async () => {
    expect(built.exitCode, built.log).toBe(0);
    const archive = await fs.readFile(path.join(output, "out", record.archive.file));
    expect(record.archive).toEqual({
      file: "devvm-image.tar.gz",
      size: archive.length,
      sha256: createHash("sha256").update(archive).digest("hex"),
    });
    const manifest = await fs.readFile(path.join(output, "out/devvm-image.manifest.json"));
    expect(record.manifestSha256).toBe(createHash("sha256").update(manifest).digest("hex"));
    expect(record.builder.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(Object.keys(record.inputs).sort()).toEqual(["packages.txt", "pins.json", "roster.yaml"]);
    expect(record.release).toBe(TEST_RELEASE);
    expect(record.base).toMatchObject({ release: TEST_RELEASE, codename: releaseByKey(TEST_RELEASE)!.codename });
    expect(built.log).toContain(`sha256 ${record.archive.sha256}`);
    // Nothing of the work is left beside it.
    expect((await fs.readdir(path.join(output, "out"))).sort()).toEqual([
      "devvm-image.json",
      "devvm-image.manifest.json",
      "devvm-image.tar.gz",
    ]);
  });

  it("read nothing from Vault, and holds no byte of its secrets, no token and no user's state", async () => {
    expect(vault.reads).toEqual([]);
    expect(
      await archiveContains(path.join(output, "out", record.archive.file), [TOKEN, OAUTH, "image-test-codex-login"]),
    ).toEqual([]);
    const names = [...entries.keys()];
    expect(names.filter((n) => /state\.sqlite|\/etc\/t3-serve\/|\/home\/./.test(n))).toEqual([]);
  });

  it("is a root file system archive a Proxmox LXC guest can use: /sbin/init, no device node, one time, numeric owners", () => {
    // Merged /usr (every release): /sbin is a link to usr/sbin. init's link is absolute on
    // Debian 12, relative on Debian 13 and Ubuntu 24.04: both lead to /usr/lib/systemd/systemd.
    expect(entries.get("./sbin")).toMatchObject({ type: "SymbolicLink", linkpath: "usr/sbin" });
    expect(entries.get("./usr/sbin/init")).toMatchObject({ type: "SymbolicLink" });
    expect(["/lib/systemd/systemd", "../lib/systemd/systemd"]).toContain(entries.get("./usr/sbin/init")?.linkpath);
    expect(entries.get("./usr/lib/systemd/systemd")).toMatchObject({ type: "File" });
    const types = new Set([...entries.values()].map((e) => e.type));
    expect([...types].filter((t) => !["Directory", "File", "Link", "SymbolicLink"].includes(t))).toEqual([]);
    expect(new Set([...entries.values()].map((e) => e.mtime))).toEqual(new Set([record.sourceDateEpoch]));
    // What the build installed is in: the pinned Node, t3, the built t3-dispatch, the first-boot unit.
    for (const name of [
      "./usr/local/bin/node",
      "./usr/local/bin/t3",
      "./usr/local/bin/t3-dispatch",
      "./etc/systemd/system/devvm-first-boot.service",
      "./etc/devvm",
      "./opt/devvm/builder/dist/devvm.mjs",
    ]) {
      expect(entries.has(name), name).toBe(true);
    }
  });

  it("boots as a container: the first boot stages Vault's tokens and starts every service; t3-dispatch signs a roster user in to their instance; a plan changes nothing", async () => {
    await imported;
    const firstBoot = `VAULT_ADDR=${vault.address}\nVAULT_TOKEN=${TOKEN}\n`;
    vm = await startDevvm({
      image: IMAGE_TAG,
      bootTimeoutMs: 5 * 60_000,
      files: [{ content: firstBoot, target: "/etc/devvm/first-boot.env", mode: 0o600 }],
    });
    const journal = async () => (await vm!.exec("journalctl -u devvm-first-boot --no-pager | tail -n 60")).stdout;
    expect(vm.boot.state, vm.boot.state === "degraded" ? `${vm.boot.failedUnits}\n${await journal()}` : "").toBe(
      "running",
    );
    expect(
      (
        await vm.exec("systemctl is-active devvm-first-boot t3-dispatch t3-serve@alice t3-serve@bob t3-serve@wizard")
      ).stdout
        .split("\n")
        .filter(Boolean),
    ).toEqual(Array(5).fill("active"));
    expect(await vm.readFile("/etc/t3-serve/claude-oauth-token")).toBe(OAUTH);
    // The first boot's settings (its token) are gone once it succeeded.
    expect((await vm.exec("test -e /etc/devvm/first-boot.env")).exitCode).toBe(1);
    const response = await fetch(DISPATCH, {
      headers: { "X-authentik-username": "alice.moreau@example.org" },
      redirect: "manual",
      signal: AbortSignal.timeout(30_000),
    });
    expect(response.status, await journal()).toBe(200);
    expect(response.headers.get("x-t3-stand-in-base-dir")).toBe("/home/alice/.t3");
    expect(response.headers.get("set-cookie")).toMatch(/t3_session=/);
    const plan = await vm.exec([
      "sh",
      "-c",
      "set -a && . /opt/devvm/builder/settings.env && exec /usr/local/bin/node /opt/devvm/builder/dist/devvm.mjs --plan",
    ]);
    expect(plan.exitCode, plan.stderr).toBe(0);
  });
});
