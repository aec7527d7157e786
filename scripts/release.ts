// The release archive: what a bare Debian 12 box needs to build itself with
// one command (`./bootstrap.sh`), without Node, npm or node_modules: the
// builder's bundle, files/, the inputs and bootstrap.sh, under `devvm/`.
// The same commit gives the same bytes: entries sorted, owners and times
// left out or fixed (SOURCE_DATE_EPOCH, else the commit's time), modes
// normalised, gzip without a timestamp.
//
//   npm run release [-- --output DIR]    prints the archive's path, size and sha256
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as tar from "tar";
import { $ } from "zx";
import { builderBundle } from "../lib/builder-bundle.ts";
import { builderIdentity } from "../lib/report.ts";

const REPO = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
const TOP = `devvm-${(JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }).version}`;
/** What goes in, besides the bundle and BUILDER_COMMIT; folders whole. */
const CONTENT = ["bootstrap.sh", "README.md", "docs", "package.json", "roster.yaml", "packages.txt", "pins.json", "files"];
const EXECUTABLE = new Set([`${TOP}/bootstrap.sh`]);

/** Every path under dir, relative, sorted, folders before what they hold. */
function walk(dir: string, relative = ""): string[] {
  return readdirSync(path.join(dir, relative))
    .sort()
    .flatMap((name) => {
      const child = path.posix.join(relative, name);
      return statSync(path.join(dir, child)).isDirectory() ? [child, ...walk(dir, child)] : [child];
    });
}

async function sourceDateEpoch(): Promise<number> {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  const commitTime = await $({ cwd: REPO, nothrow: true, quiet: true })`git log -1 --format=%ct`;
  return commitTime.exitCode === 0 ? Number(commitTime.stdout.trim()) : 0;
}

export async function makeRelease(outputDir: string): Promise<{ file: string; sha256: string; size: number }> {
  const { version, commit } = builderIdentity(REPO);
  const staging = mkdtempSync(path.join(tmpdir(), "devvm-release-"));
  try {
    const top = path.join(staging, TOP);
    mkdirSync(path.join(top, "dist"), { recursive: true });
    for (const entry of CONTENT) if (existsSync(path.join(REPO, entry))) cpSync(path.join(REPO, entry), path.join(top, entry), { recursive: true });
    writeFileSync(path.join(top, "dist/devvm.mjs"), (await builderBundle(REPO)).content);
    writeFileSync(path.join(top, "BUILDER_COMMIT"), `${commit}\n`);
    const entries = [TOP, ...walk(staging, TOP).filter((p) => p !== TOP)];
    for (const entry of entries) {
      const full = path.join(staging, entry);
      chmodSync(full, statSync(full).isDirectory() || EXECUTABLE.has(entry) ? 0o755 : 0o644);
    }
    mkdirSync(outputDir, { recursive: true });
    const file = path.join(outputDir, `devvm-${version}-${commit.slice(0, 12)}.tar.gz`);
    const mtime = new Date((await sourceDateEpoch()) * 1000);
    // portable: no uid, gid, user or group names, atime or ctime; noDirRecurse: the sorted list is the order.
    await tar.c({ file, cwd: staging, gzip: true, portable: true, noDirRecurse: true, mtime }, entries);
    const content = readFileSync(file);
    return { file, sha256: createHash("sha256").update(content).digest("hex"), size: content.length };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { output: { type: "string" } } });
  const release = await makeRelease(path.resolve(values.output ?? path.join(REPO, "output")));
  process.stdout.write(`${release.file}\n  ${release.size} bytes, sha256 ${release.sha256}\n`);
}
