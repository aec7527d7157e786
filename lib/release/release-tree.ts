// The release tree: what a bare Debian 12 box needs to build itself with one
// command (`./bootstrap.sh`), without Node, npm or node_modules: the
// builder's bundle, files/, the inputs and bootstrap.sh. `npm run release`
// archives it; `build.ts image` puts it into the image's root to build there.
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { $ } from "zx";
import type { BuildSession } from "../core/build-session.ts";
import { builderBundle } from "./builder-bundle.ts";
import { UserError } from "../core/errors.ts";
import { builderIdentity } from "../output/report.ts";

/** What goes in, besides the bundle, BUILDER_COMMIT and SOURCE_DATE_EPOCH; folders whole. */
const CONTENT = [
  "bootstrap.sh",
  "README.md",
  "docs",
  "package.json",
  "roster.yaml",
  "packages.txt",
  "pins.json",
  "files",
];
const EXECUTABLE = new Set(["bootstrap.sh"]);
/** The release records its time, so an image built from a release (no .git) has the same one. */
const EPOCH_FILE = "SOURCE_DATE_EPOCH";

/** Every path under dir, relative, sorted, folders before what they hold. */
export function walk(dir: string, relative = ""): string[] {
  return readdirSync(path.join(dir, relative))
    .sort()
    .flatMap((name) => {
      const child = path.posix.join(relative, name);
      return statSync(path.join(dir, child)).isDirectory() ? [child, ...walk(dir, child)] : [child];
    });
}

/**
 * The time every built thing carries (reproducible-builds.org's
 * SOURCE_DATE_EPOCH): the variable when set, else the builder's last
 * commit's time, else the one a release archive recorded; 0 without any.
 */
export async function sourceDateEpoch(repoDir: string): Promise<number> {
  const fromEnvironment = process.env.SOURCE_DATE_EPOCH;
  if (fromEnvironment) {
    if (!/^\d+$/.test(fromEnvironment))
      throw new UserError(
        `SOURCE_DATE_EPOCH is "${fromEnvironment}", not whole seconds since 1970`,
        "unset it, or set it to a time such as $(git log -1 --format=%ct)",
      );
    return Number(fromEnvironment);
  }
  if (existsSync(path.join(repoDir, ".git"))) {
    const commitTime = await $({ cwd: repoDir, nothrow: true, quiet: true })`git log -1 --format=%ct`;
    if (commitTime.exitCode === 0) return Number(commitTime.stdout.trim());
  }
  const file = path.join(repoDir, EPOCH_FILE);
  const recorded = existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : 0;
  return Number.isInteger(recorded) && recorded >= 0 ? recorded : 0;
}

/** Writes the release tree of the builder at repoDir into target (a new folder); modes normalised, times left to the caller. */
export async function writeReleaseTree(session: BuildSession, repoDir: string, target: string): Promise<void> {
  mkdirSync(path.join(target, "dist"), { recursive: true });
  for (const entry of CONTENT)
    if (existsSync(path.join(repoDir, entry)))
      cpSync(path.join(repoDir, entry), path.join(target, entry), { recursive: true });
  writeFileSync(path.join(target, "dist/devvm.mjs"), (await builderBundle(session, repoDir)).content);
  writeFileSync(path.join(target, "BUILDER_COMMIT"), `${builderIdentity(repoDir).commit}\n`);
  writeFileSync(path.join(target, EPOCH_FILE), `${await sourceDateEpoch(repoDir)}\n`);
  chmodSync(target, 0o755);
  for (const entry of walk(target)) {
    const full = path.join(target, entry);
    chmodSync(full, statSync(full).isDirectory() || EXECUTABLE.has(entry) ? 0o755 : 0o644);
  }
}
