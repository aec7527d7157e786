import { readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestRoot } from "../../test/support/test-context.ts";
import {
  exactDependencies,
  parseMadison,
  scratchSourceParts,
  snapshotSource,
  snapshotSourcesFile,
} from "./apt-snapshot.ts";
import { releaseByKey } from "./releases.ts";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";

const release = (key: string) => releaseByKey(key)!;

describe("the snapshot source", () => {
  it("is Debian's snapshot archive on Debian, debian and debian-security, with bookworm's backports on Debian 12", () => {
    const text = snapshotSourcesFile(
      release("debian-12"),
      snapshotSource(release("debian-12"), "20261101T000000Z", {}),
    );
    expect(text).toContain(
      "URIs: http://snapshot.debian.org/archive/debian/20261101T000000Z/\nSuites: bookworm bookworm-updates bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\nCheck-Valid-Until: no\n",
    );
    expect(text).toContain(
      "URIs: http://snapshot.debian.org/archive/debian-security/20261101T000000Z/\nSuites: bookworm-security\n",
    );
  });

  it("is Ubuntu's snapshot service on Ubuntu, every pocket under one archive, main and universe, Ubuntu's keys", () => {
    const noble = release("ubuntu-24.04");
    const text = snapshotSourcesFile(noble, snapshotSource(noble, "20261101T000000Z", {}));
    expect(text).toContain(
      "URIs: https://snapshot.ubuntu.com/ubuntu/20261101T000000Z/\nSuites: noble noble-updates noble-security\nComponents: main universe\nSigned-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n",
    );
    expect(text.match(/^Types: deb$/gm)).toHaveLength(1);
  });

  it("uses the settings' archive and keyring when given", () => {
    const source = snapshotSource(release("debian-13"), "20261101T000000Z", {
      aptSnapshotUrl: "http://127.0.0.1:9/archive",
      aptSnapshotKeyring: "/etc/k.gpg",
    });
    expect(source.stanzas.map((s) => s.uri)).toEqual([
      "http://127.0.0.1:9/archive/debian/20261101T000000Z/",
      "http://127.0.0.1:9/archive/debian-security/20261101T000000Z/",
    ]);
    expect(source.keyring).toBe("/etc/k.gpg");
  });

  it("lives in a scratch copy of sources.list.d (the files apt reads, as apt reads them), removed on request", async () => {
    using root = makeTestRoot();
    const own = path.join(root.dir, "etc/apt/sources.list.d");
    mkdirSync(own, { recursive: true });
    writeFileSync(path.join(own, "debian.sources"), "Types: deb\n");
    writeFileSync(path.join(own, "old.list.save"), "deb x y\n");
    writeFileSync(path.join(root.dir, "linked"), "deb http://example.invalid/debian trixie main\n");
    symlinkSync(path.join(root.dir, "linked"), path.join(own, "linked.list"));
    symlinkSync(path.join(root.dir, "absent"), path.join(own, "dangling.list"));
    mkdirSync(path.join(own, "folder.list"));
    const debian = release("debian-13");
    const scratch = await scratchSourceParts(root.ctx, debian, snapshotSource(debian, "20261101T000000Z", {}));
    try {
      expect(scratch.options).toEqual(["-o", `Dir::Etc::SourceParts=${scratch.dir}`]);
      expect(path.dirname(scratch.dir)).toBe(tmpdir());
      expect(readdirSync(scratch.dir).sort()).toEqual(["debian.sources", "linked.list", "zz-devvm-snapshot.sources"]);
      expect(readFileSync(path.join(scratch.dir, "linked.list"), "utf8")).toContain("example.invalid");
      expect(readFileSync(path.join(scratch.dir, "debian.sources"), "utf8")).toBe("Types: deb\n");
    } finally {
      await scratch.remove();
    }
    expect(readdirSync(tmpdir()).includes(path.basename(scratch.dir))).toBe(false);
  });
});

describe("apt-cache's answers", () => {
  it("madison: each package's versions, once each, binary packages only", () => {
    const offered = parseMadison(
      [
        "      curl | 8.14.1-2+deb13u8 | http://deb.debian.org/debian-security trixie-security/main amd64 Packages",
        "      curl | 8.14.1-2+deb13u7 | http://deb.debian.org/debian trixie/main amd64 Packages",
        "      curl | 8.14.1-2+deb13u7 | http://snapshot.debian.org/archive/debian/20261101T000000Z trixie/main amd64 Packages",
        "      curl | 8.14.1-2+deb13u9 | http://deb.debian.org/debian trixie/main Sources",
        "",
      ].join("\n"),
    );
    expect([...offered]).toEqual([["curl", ["8.14.1-2+deb13u8", "8.14.1-2+deb13u7"]]]);
  });

  it("show: the exact dependencies of the first record, Pre-Depends too, continuation lines and :any included, alternatives not", () => {
    const show = [
      "Package: curl",
      "Version: 8.14.1-2+deb13u7",
      "Pre-Depends: libc6 (>= 2.36)",
      "Depends: libcurl4t64 (= 8.14.1-2+deb13u7), zlib1g (>= 1:1.1.4),",
      " perl:any (= 5.40.1-6), a (= 1) | b (= 2)",
      "Description: a tool",
      "",
      "Package: curl",
      "Version: 8.14.1-2+deb13u8",
      "Depends: libcurl4t64 (= 8.14.1-2+deb13u8)",
    ].join("\n");
    expect(exactDependencies(show)).toEqual([
      { name: "libcurl4t64", version: "8.14.1-2+deb13u7" },
      { name: "perl", version: "5.40.1-6" },
    ]);
    expect(exactDependencies("Package: tree\nVersion: 2.2.1-1\n")).toEqual([]);
  });
});
