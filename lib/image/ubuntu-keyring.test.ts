// Ubuntu's keyring package is used only when it has the sha256 recorded in
// the code: a local server stands in for the archive's pool.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestRoot } from "../../test/support/test-context.ts";
import { fetchUbuntuArchiveKeyring, UBUNTU_KEYRING } from "./ubuntu-keyring.ts";

const hasDpkgDeb = (() => {
  try {
    execFileSync("dpkg-deb", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/** Serves `body` at every path; the test's mirror. */
async function pool(body: Buffer): Promise<{ url: string } & AsyncDisposable> {
  const server = createServer((_, res) => res.end(body));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/ubuntu`,
    [Symbol.asyncDispose]: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("Ubuntu's archive keyring", () => {
  it("refuses a package that is not the recorded one, naming both hashes, and unpacks nothing", async () => {
    using root = makeTestRoot();
    const wrong = Buffer.from("not ubuntu-keyring\n");
    await using mirror = await pool(wrong);
    const dir = path.join(root.dir, "keys");
    mkdirSync(dir);
    const received = createHash("sha256").update(wrong).digest("hex");
    await expect(fetchUbuntuArchiveKeyring(root.ctx, mirror.url, dir)).rejects.toThrow(
      `${mirror.url}/${UBUNTU_KEYRING.pool} is not the ubuntu-keyring ${UBUNTU_KEYRING.version} recorded in lib/image/ubuntu-keyring.ts: expected sha256 ${UBUNTU_KEYRING.sha256}, received ${received}`,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it.skipIf(!hasDpkgDeb)("unpacks the keyring of a package that has the recorded sha256", async () => {
    using root = makeTestRoot();
    // A package of the same shape, and its own hash as the record.
    const tree = path.join(root.dir, "tree");
    mkdirSync(path.join(tree, "DEBIAN"), { recursive: true });
    mkdirSync(path.join(tree, "usr/share/keyrings"), { recursive: true });
    writeFileSync(
      path.join(tree, "DEBIAN/control"),
      "Package: ubuntu-keyring\nVersion: 1\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: test\n",
    );
    writeFileSync(path.join(tree, "usr/share/keyrings/ubuntu-archive-keyring.gpg"), "keys\n");
    const deb = path.join(root.dir, "ubuntu-keyring_1_all.deb");
    execFileSync("dpkg-deb", ["--root-owner-group", "-b", tree, deb], { stdio: "ignore" });
    const bytes = readFileSync(deb);
    await using mirror = await pool(bytes);
    const dir = path.join(root.dir, "keys");
    mkdirSync(dir);
    const pkg = {
      ...UBUNTU_KEYRING,
      version: "1",
      pool: "pool/main/u/ubuntu-keyring/ubuntu-keyring_1_all.deb",
      sha256: createHash("sha256").update(bytes).digest("hex"),
    };
    const keyring = await fetchUbuntuArchiveKeyring(root.ctx, mirror.url, dir, pkg);
    expect(keyring).toBe(path.join(dir, "package/usr/share/keyrings/ubuntu-archive-keyring.gpg"));
    expect(readFileSync(keyring, "utf8")).toBe("keys\n");
  });
});
