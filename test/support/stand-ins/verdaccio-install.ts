// Installs Verdaccio (test/support/stand-ins/verdaccio/, its own package.json and
// lock) on demand into a cache folder outside the work tree, named by the
// hash of that package.json and lock: a changed lock installs afresh, an
// unchanged one costs nothing. Outside the tree because the container tests
// copy the whole project into every container, and Verdaccio is 80 MB.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "./run-command.ts";

const PACKAGE_DIR = fileURLToPath(new URL("verdaccio/", import.meta.url));
const FILES = ["package.json", "package-lock.json"];

let pending: Promise<string> | undefined;

/** The path of Verdaccio's CLI entry point, installing it first when needed. */
export function ensureVerdaccio(): Promise<string> {
  pending ??= install().catch((error: unknown) => {
    pending = undefined;
    throw error;
  });
  return pending;
}

async function install(): Promise<string> {
  const hash = createHash("sha256");
  for (const file of FILES) hash.update(readFileSync(path.join(PACKAGE_DIR, file)));
  const cacheRoot = process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache");
  const dir = path.join(cacheRoot, "devvm-stand-ins", `verdaccio-${hash.digest("hex").slice(0, 16)}`);
  const bin = path.join(dir, "node_modules", "verdaccio", "bin", "verdaccio");
  if (existsSync(bin)) return bin;

  // Installed beside and renamed into place, so a killed or concurrent
  // install never leaves a half-filled folder under the final name.
  const partial = `${dir}.partial-${process.pid}-${Date.now()}`;
  await mkdir(partial, { recursive: true });
  try {
    for (const file of FILES) await copyFile(path.join(PACKAGE_DIR, file), path.join(partial, file));
    await runCommand("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: partial });
    await rename(partial, dir).catch((error: NodeJS.ErrnoException) => {
      // Another run finished first; its install is as good as ours.
      if (!existsSync(bin)) throw error;
    });
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  return bin;
}
