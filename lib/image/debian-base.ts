// A Debian 12 root file system made here with debootstrap: no registry, no
// image from elsewhere. The container tests' base image (test/support/harness/base-image.ts)
// and `build.ts image` both start from it.
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Logger } from "../core/context.ts";
import { UserError } from "../core/errors.ts";
import { run } from "../machine/exec.ts";
import { findHostDebianMirror, findHostSecurityMirror } from "./host-mirror.ts";

export const debianBase = {
  suite: "bookworm",
  variant: "minbase",
  // minbase has no init; a VM boots systemd. dbus is left out: systemd 252
  // reaches `running` without it and root's systemctl does not need it (only
  // hostnamectl, loginctl and the like do).
  include: ["systemd", "systemd-sysv"],
  // A fresh Debian 12 VM's apt sources: the release, its updates and security
  // suites (debootstrap writes only the first). Same mirrors as the host, so
  // `build.ts lock` run on the host pins versions the base can install.
  aptSuites: ["bookworm", "bookworm-updates", "bookworm-security"],
};

/** debootstrap of debianBase into rootDir (a new, empty folder), with the host's mirrors as its apt sources. */
export async function debootstrapBase(rootDir: string, log: Logger): Promise<void> {
  if ((await run({ log }, "sh", ["-c", "command -v debootstrap"], { okCodes: [1, 127] })).exitCode !== 0) {
    throw new UserError("debootstrap is not installed: it makes the Debian 12 base", "apt-get install debootstrap");
  }
  const { suite, variant, include } = debianBase;
  const mirror = await findHostDebianMirror();
  const args = [`--variant=${variant}`, `--include=${include.join(",")}`, suite, rootDir, ...(mirror ? [mirror] : [])];
  try {
    await run({ log }, "debootstrap", args, {
      heartbeat: { label: `debootstrap ${suite} (${variant}) from ${mirror ?? "debootstrap's default mirror"}` },
      timeoutMs: 30 * 60_000,
    });
  } catch (error) {
    // debootstrap prints its "E:" lines on stdout; the details are in its log in the target.
    const detail = await fs.readFile(path.join(rootDir, "debootstrap/debootstrap.log"), "utf8").catch(() => "");
    if (detail) log.info(detail.trim().split("\n").slice(-20).join("\n"));
    throw error;
  }
  await writeAptSources(rootDir, mirror);
  // Downloaded .debs would only make the result bigger.
  for (const name of await fs.readdir(path.join(rootDir, "var/cache/apt/archives"))) {
    if (name.endsWith(".deb")) await fs.rm(path.join(rootDir, "var/cache/apt/archives", name));
  }
}

async function writeAptSources(rootDir: string, mirror: string | undefined): Promise<void> {
  const security = await findHostSecurityMirror();
  if (!mirror) return; // debootstrap's own default stays
  const lines = debianBase.aptSuites.map((suite) =>
    suite.endsWith("-security") ? (security ? `deb ${security} ${suite} main` : "") : `deb ${mirror} ${suite} main`,
  );
  await fs.writeFile(path.join(rootDir, "etc/apt/sources.list"), `${lines.filter(Boolean).join("\n")}\n`);
}
