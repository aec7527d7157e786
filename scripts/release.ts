// The release archive: the release tree (lib/release/release-tree.ts) under
// `devvm-VERSION/`. The same commit gives the same bytes: entries sorted,
// owners and times left out or fixed (SOURCE_DATE_EPOCH, else the commit's
// time), modes normalised, gzip without a timestamp.
//
//   npm run release [-- --output DIR]    prints the archive's path, size and sha256
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as tar from "tar";
import { BuildSession } from "../lib/core/build-session.ts";
import { sourceDateEpoch, walk, writeReleaseTree } from "../lib/release/release-tree.ts";
import { builderIdentity } from "../lib/output/report.ts";

const REPO = path.resolve(fileURLToPath(new URL("..", import.meta.url)));

export async function makeRelease(outputDir: string): Promise<{ file: string; sha256: string; size: number }> {
  const { version, commit } = builderIdentity(REPO);
  const top = `devvm-${version}`;
  const staging = mkdtempSync(path.join(tmpdir(), "devvm-release-"));
  try {
    await writeReleaseTree(new BuildSession(), REPO, path.join(staging, top));
    const entries = [top, ...walk(staging, top)];
    mkdirSync(outputDir, { recursive: true });
    const file = path.join(outputDir, `devvm-${version}-${commit.slice(0, 12)}.tar.gz`);
    const mtime = new Date((await sourceDateEpoch(REPO)) * 1000);
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
