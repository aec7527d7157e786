import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { diffArchives, formatArchiveDifferences, readArchive } from "./compare-archives.ts";
import { NORMALISATIONS, normaliseRoot } from "./normalise.ts";
import { GZIP_BLOCK_BYTES } from "./parallel-gzip.ts";
import { writeRootfsArchive } from "./rootfs-archive.ts";

const EPOCH = 1_780_000_000;
const isRoot = process.getuid?.() === 0;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("writeRootfsArchive", () => {
  let dir: string;
  beforeEach(() => void (dir = mkdtempSync(path.join(tmpdir(), "devvm-rootfs-test-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A small root file system; `order` decides in which order its files are made. */
  function makeRoot(name: string, order: "forward" | "backward", touchedAt: number): string {
    const root = path.join(dir, name);
    const files: Array<[string, string]> = [
      ["etc/hostname", "devvm\n"],
      ["etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'],
      ["usr/bin/tool", "#!/bin/sh\necho tool\n"],
      [`opt/devvm/npm/${"deep/".repeat(30)}package.json`, "{}\n"],
    ];
    for (const [file, content] of order === "forward" ? files : [...files].reverse()) {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), content, { mode: file.startsWith("usr/bin") ? 0o755 : 0o644 });
      utimesSync(path.join(root, file), touchedAt, touchedAt);
    }
    symlinkSync("usr/bin", path.join(root, "bin"));
    linkSync(path.join(root, "usr/bin/tool"), path.join(root, "usr/bin/tool-again"));
    return root;
  }

  it("gives the same bytes for the same tree, whatever the order and times its files were made in", async () => {
    const a = await writeRootfsArchive(makeRoot("a", "forward", 1_000_000), path.join(dir, "a.tar.gz"), EPOCH);
    const b = await writeRootfsArchive(makeRoot("b", "backward", 2_000_000), path.join(dir, "b.tar.gz"), EPOCH);
    expect(a.sha256).toBe(b.sha256);
    expect(a.size).toBe(b.size);
    // What the system's tar reads: sorted, every time the epoch, the hard link a link, paths of any length.
    const listing = execFileSync("tar", ["-tvzf", a.file, "--numeric-owner", "--full-time"], { encoding: "utf8" })
      .trim()
      .split("\n");
    // (GNU tar shows a folder named by a pax header without its trailing slash.)
    expect(
      listing.map((l) =>
        l
          .split(/\s+/)
          .slice(5)
          .join(" ")
          .replace(/([^.])\/$/, "$1"),
      ),
    ).toEqual([
      "./",
      "./bin -> usr/bin",
      "./etc",
      "./etc/hostname",
      "./etc/os-release",
      "./opt",
      "./opt/devvm",
      "./opt/devvm/npm",
      ...Array.from({ length: 30 }, (_, i) => `./opt/devvm/npm/${"deep/".repeat(i + 1).slice(0, -1)}`),
      `./opt/devvm/npm/${"deep/".repeat(30)}package.json`,
      "./usr",
      "./usr/bin",
      "./usr/bin/tool",
      "./usr/bin/tool-again link to ./usr/bin/tool",
    ]);
    const stamp = new Date(EPOCH * 1000).toISOString().replace("T", " ").replace(".000Z", "");
    for (const line of listing) expect(line).toContain(stamp);
    expect(listing.find((l) => l.endsWith("./usr/bin/tool"))).toMatch(/^-rwxr-xr-x /);
    expect(readFileSync(a.file).subarray(4, 8)).toEqual(Buffer.alloc(4)); // gzip's MTIME field
    expect(existsSync(`${a.file}.part-${process.pid}`)).toBe(false);
  });

  it.skipIf(!isRoot)("keeps owners as numbers, without names, and leaves FIFOs out", async () => {
    const root = makeRoot("a", "forward", 1_000_000);
    chownSync(path.join(root, "etc/hostname"), 1234, 5678);
    execFileSync("mkfifo", [path.join(root, "etc/fifo")]);
    const { file } = await writeRootfsArchive(root, path.join(dir, "a.tar.gz"), EPOCH);
    const entries = await readArchive(file);
    expect(entries.get("./etc/hostname")).toMatchObject({ uid: 1234, gid: 5678 });
    expect(entries.has("./etc/fifo")).toBe(false);
    expect(execFileSync("tar", ["-tvzf", file], { encoding: "utf8" })).toMatch(/ 1234\/5678 .*\.\/etc\/hostname/);
  });

  it("a one-byte change makes another archive, and the comparison names that file and nothing else", async () => {
    const a = await writeRootfsArchive(makeRoot("a", "forward", 1_000_000), path.join(dir, "a.tar.gz"), EPOCH);
    const changed = makeRoot("b", "forward", 1_000_000);
    writeFileSync(path.join(changed, "etc/hostname"), "devvn\n");
    const b = await writeRootfsArchive(changed, path.join(dir, "b.tar.gz"), EPOCH);
    expect(b.sha256).not.toBe(a.sha256);
    const differences = diffArchives(await readArchive(a.file), await readArchive(b.file), ["first", "second"]);
    expect(differences.map((d) => d.path)).toEqual(["./etc/hostname"]);
    expect(formatArchiveDifferences(differences)).toMatch(
      /^ {2}\.\/etc\/hostname: content [0-9a-f]{12}… → [0-9a-f]{12}…$/,
    );
  });

  it("writes a tree larger than one gzip block as several members, which readArchive and tar read whole", async () => {
    const root = makeRoot("a", "forward", 1_000_000);
    const big = Buffer.alloc(GZIP_BLOCK_BYTES + 100_000, "usr/share/doc/devvm\n");
    big.write("the end\n", big.length - 8);
    writeFileSync(path.join(root, "usr/big"), big);
    const { file } = await writeRootfsArchive(root, path.join(dir, "a.tar.gz"), EPOCH);
    expect(gunzipSync(readFileSync(file)).length).toBeGreaterThan(GZIP_BLOCK_BYTES); // so more than one member
    const entries = await readArchive(file);
    expect(entries.get("./usr/big")).toMatchObject({ size: big.length, sha256: sha256(big) });
    expect(entries.get("./usr/bin/tool")).toMatchObject({ sha256: sha256(Buffer.from("#!/bin/sh\necho tool\n")) });
    expect(execFileSync("tar", ["-xzOf", file, "./usr/big"], { maxBuffer: 64 * 1024 * 1024 }).equals(big)).toBe(true);
  });

  it("names a mode, an owner, a link target and a missing entry", async () => {
    const a = await readArchive(
      (await writeRootfsArchive(makeRoot("a", "forward", 1_000_000), path.join(dir, "a.tar.gz"), EPOCH)).file,
    );
    const other = makeRoot("b", "forward", 1_000_000);
    execFileSync("chmod", ["0600", path.join(other, "etc/os-release")]);
    rmSync(path.join(other, "bin"));
    symlinkSync("usr/sbin", path.join(other, "bin"));
    rmSync(path.join(other, "usr/bin/tool-again"));
    const b = await readArchive((await writeRootfsArchive(other, path.join(dir, "b.tar.gz"), EPOCH + 1)).file);
    const lines = formatArchiveDifferences(diffArchives(a, b, ["first", "second"])).split("\n");
    expect(lines).toContain("  ./bin: link usr/bin → usr/sbin, mtime 1780000000 → 1780000001");
    expect(lines).toContain("  ./etc/os-release: mode 0644 → 0600, mtime 1780000000 → 1780000001");
    expect(lines).toContain("  ./usr/bin/tool-again: only in first");
  });
});

describe("normaliseRoot", () => {
  let root: string;
  beforeEach(() => void (root = mkdtempSync(path.join(tmpdir(), "devvm-normalise-test-"))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));
  const put = (file: string, content: string) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), content);
  };

  it("gives every entry of the table a reason", () => {
    for (const rule of NORMALISATIONS) expect(rule.reason.length, rule.path).toBeGreaterThan(20);
  });

  it("empties the machine id, removes seeds, caches and backups, clears logs and sets shadow's dates from the epoch", async () => {
    put("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    put("var/lib/systemd/random-seed", "random");
    put("var/log/apt/history.log", "Start-Date: 2026-11-26  10:54:23\n");
    put("var/log/dpkg.log", "2026-11-26 10:54:23 install\n");
    put("var/cache/apt/pkgcache.bin", "cache");
    put("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "lists");
    mkdirSync(path.join(root, "var/lib/apt/lists/partial"), { recursive: true });
    put("etc/passwd-", "old");
    put("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    put("etc/shadow", "root:*:20418:0:99999:7:::\nalice:!:20418::::::\nnobody:*::0:99999:7:::\n");
    const done = await normaliseRoot(root, EPOCH);
    const day = Math.floor(EPOCH / 86_400);

    expect(readFileSync(path.join(root, "etc/machine-id"), "utf8")).toBe("");
    expect(existsSync(path.join(root, "var/lib/systemd/random-seed"))).toBe(false);
    expect(existsSync(path.join(root, "var/log"))).toBe(true);
    expect(execFileSync("find", [path.join(root, "var/log"), "-mindepth", "1"], { encoding: "utf8" })).toBe("");
    expect(existsSync(path.join(root, "var/cache/apt/pkgcache.bin"))).toBe(false);
    expect(execFileSync("ls", ["-A", path.join(root, "var/lib/apt/lists")], { encoding: "utf8" }).trim()).toBe(
      "partial",
    );
    expect(existsSync(path.join(root, "etc/passwd-"))).toBe(false);
    expect(readFileSync(path.join(root, "etc/passwd"), "utf8")).toBe("root:x:0:0:root:/root:/bin/bash\n");
    expect(readFileSync(path.join(root, "etc/shadow"), "utf8")).toBe(
      `root:*:${day}:0:99999:7:::\nalice:!:${day}::::::\nnobody:*::0:99999:7:::\n`,
    );
    expect(done).toContain("empty /etc/machine-id");
    expect(done).toContain("shadow-dates /etc/shadow");
  });
});
