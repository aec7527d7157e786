// Ubuntu's archive keyring, which mmdebstrap checks the Ubuntu archive with
// when it makes an Ubuntu base: Debian 12 packages none. It comes from
// Ubuntu's own ubuntu-keyring package in the archive's pool, trusted by the
// sha256 recorded here (not by where it came from), and its keyring file is
// taken out with dpkg-deb.
//
// Recorded on 2026-12-03 from the SHA256, Size and Filename fields of
// ubuntu-keyring in noble's main/binary-amd64/Packages.gz (an index the
// archive's signed Release file hashes; noble-updates and noble-security had
// no newer one). To refresh, read the same fields again, from noble-updates
// first (its version is newer when it has one):
//   curl -s http://archive.ubuntu.com/ubuntu/dists/noble-updates/main/binary-amd64/Packages.gz |
//     zcat | grep -A30 '^Package: ubuntu-keyring$' | grep -E '^(Version|Filename|Size|SHA256):'
// and check that the file downloaded from that Filename has that sha256.
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { run } from "../machine/exec.ts";
import { fetchToFile } from "../sources/fetch-to-file.ts";

export interface KeyringPackage {
  version: string;
  /** Its path in the archive (the Packages index's Filename). */
  pool: string;
  sha256: string;
  /** The keyring file in the package, relative to its root. */
  keyring: string;
}

export const UBUNTU_KEYRING: KeyringPackage = {
  version: "2023.11.28.1",
  pool: "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb",
  sha256: "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8",
  keyring: "usr/share/keyrings/ubuntu-archive-keyring.gpg",
};

/** The package is 11 KB; a server that sends more is not sending it. */
const MOST_BYTES = 1024 * 1024;

type KeyringContext = Pick<BuildContext, "log" | "settings" | "session">;

/**
 * Downloads the keyring package from `mirror` into `dir` (a new, empty
 * folder), refuses it unless it has the recorded sha256, and returns the
 * path of its archive keyring, unpacked in `dir`.
 */
export async function fetchUbuntuArchiveKeyring(
  ctx: KeyringContext,
  mirror: string,
  dir: string,
  pkg: KeyringPackage = UBUNTU_KEYRING,
): Promise<string> {
  const url = `${mirror}/${pkg.pool}`;
  const deb = path.join(dir, path.basename(pkg.pool));
  const { sha256 } = await fetchToFile(ctx, url, deb, { bytes: MOST_BYTES });
  if (sha256 !== pkg.sha256) {
    await fs.rm(deb, { force: true });
    throw new UserError(
      `${url} is not the ubuntu-keyring ${pkg.version} recorded in lib/image/ubuntu-keyring.ts: expected sha256 ${pkg.sha256}, received ${sha256}`,
      "nothing was unpacked; if Ubuntu published a new ubuntu-keyring, record it as that file's comment says",
    );
  }
  const unpacked = path.join(dir, "package");
  await run(ctx, "dpkg-deb", ["-x", deb, unpacked]);
  const keyring = path.join(unpacked, pkg.keyring);
  if (!existsSync(keyring))
    throw new UserError(
      `ubuntu-keyring ${pkg.version} has no ${pkg.keyring}`,
      "record the package's keyring path in lib/image/ubuntu-keyring.ts",
    );
  return keyring;
}
