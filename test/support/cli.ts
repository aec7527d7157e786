// build.ts run as a program, for the CLI's tests (build.test.ts,
// lib/cli/**/*.test.ts): on a temporary --root, with inputs in a folder of
// their own when a test changes them.
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The builder's own folder: build.ts and the committed inputs. */
export const REPO = fileURLToPath(new URL("../..", import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function build(...args: string[]): CliRun {
  return buildWith({}, ...args);
}

export function buildWith(options: { env?: Record<string, string>; uid?: number }, ...args: string[]): CliRun {
  const env = { ...process.env, DEVVM_ADMIN_CODE_DIR: "/home/wizard/code", ...options.env };
  const run = spawnSync(process.execPath, ["--import", "tsx", path.join(REPO, "build.ts"), ...args], {
    encoding: "utf8",
    env,
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** buildWith(), without blocking: for cases that run side by side, or against a server this process answers meanwhile. */
export function buildAsyncWith(options: { env?: Record<string, string> }, ...args: string[]): Promise<CliRun> {
  const env = { ...process.env, DEVVM_ADMIN_CODE_DIR: "/home/wizard/code", ...options.env };
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "build.ts"), ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

export function buildAsync(...args: string[]): Promise<CliRun> {
  return buildAsyncWith({}, ...args);
}

/** An empty root and output folder; removeDirs() removes them. */
export function makeRootAndOutput(): { root: string; output: string } {
  return {
    root: mkdtempSync(path.join(tmpdir(), "devvm-root-")),
    output: mkdtempSync(path.join(tmpdir(), "devvm-output-")),
  };
}

export function removeDirs(...dirs: string[]): void {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

/** A folder of inputs: the committed roster, packages.txt and pins.json, each replaceable. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- pins.json as a JSON tree the test edits freely
export function inputsDir(replace: { pins?: (pins: Record<string, any>) => void; packages?: string } = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), "devvm-inputs-"));
  for (const f of ["packages.txt", "pins.json", "roster.yaml"]) cpSync(path.join(REPO, f), path.join(dir, f));
  if (replace.packages !== undefined) writeFileSync(path.join(dir, "packages.txt"), replace.packages);
  if (replace.pins) {
    const pins = JSON.parse(readFileSync(path.join(dir, "pins.json"), "utf8"));
    replace.pins(pins);
    writeFileSync(path.join(dir, "pins.json"), `${JSON.stringify(pins, null, 2)}\n`);
  }
  return dir;
}

/** Every file under dir with its mtime, to prove that a rerun writes nothing. */
export function mtimes(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (!full.includes("/run/lock")) out[full] = statSync(full).mtimeMs;
  }
  return out;
}
