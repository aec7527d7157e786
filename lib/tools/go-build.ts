// `go build` of a program from its source folder (t3-dispatch), with its
// modules fetched through the Go module proxy of the settings and checked
// against the source's go.sum, and everything go writes kept in a scratch
// folder the caller removes. A module go.sum refuses stops the build with
// go's own lines and what to do, not just go's exit code.
import { lstat, mkdir } from "node:fs/promises";
import type { BuildContext } from "../core/context.ts";
import { CommandError, UserError } from "../core/errors.ts";
import { settingVariables } from "../inputs/settings.ts";
import { run } from "../machine/exec.ts";

/**
 * The go command's environment. Set here, never inherited from root's shell
 * or a `go env -w` file, so a timer's build and a hand-run one fetch alike.
 */
export function goBuildEnvironment(
  scratch: string,
  goProxy: string | undefined,
  goCache?: string,
): Record<string, string | undefined> {
  return {
    // Caches, GOPATH, the module cache and go's own temporary files in the
    // scratch folder: the build leaves nothing in root's home or anywhere
    // else on the box, even when killed (the next build removes the folder).
    // Only the build cache may live on (DEVVM_GO_CACHE): go writes each entry
    // whole and keys it by the hash of all its inputs, so a kept one can only
    // save compiling what did not change.
    HOME: scratch,
    GOCACHE: goCache ?? `${scratch}/cache`,
    GOPATH: `${scratch}/gopath`,
    GOMODCACHE: `${scratch}/mod`,
    GOTMPDIR: `${scratch}/tmp`,
    // No go env file (root's, or one under XDG_CONFIG_HOME): only this decides.
    GOENV: "off",
    // A static binary.
    CGO_ENABLED: "0",
    // Never fetch another Go: a go.mod asking for a newer one fails, naming both.
    GOTOOLCHAIN: "local",
    // readonly: go.sum is never added to, so a module it lacks fails the
    // build ("missing go.sum entry") and one whose bytes differ too
    // ("checksum mismatch"). modcacherw: the module cache is writable, so
    // the scratch folder (or a killed build's) can always be removed.
    GOFLAGS: "-mod=readonly -modcacherw",
    // The setting, else Go's own default (GOROOT/go.env).
    GOPROXY: goProxy,
    // go.sum is the check. With every line there go never asks a checksum
    // database, and with one missing -mod=readonly refuses before asking
    // (both measured, Go 1.23); off makes sure no path of go's waits on a
    // service the box may not reach (Go's own checksum database is not
    // reachable from this test machine).
    GOSUMDB: "off",
    // Nothing routes a module around the proxy setting.
    GOPRIVATE: undefined,
    GONOPROXY: undefined,
  };
}

export interface GoModuleProblem {
  kind: "checksum mismatch" | "missing go.sum entry";
  /** go's lines that say which module and which hashes. */
  lines: string[];
}

/** What go said about a module go.sum refused, if that is why it failed. */
export function goModuleProblem(stderr: string): GoModuleProblem | undefined {
  const lines = stderr.split("\n");
  const mismatch = lines.findIndex((l) => /: checksum mismatch$/.test(l));
  if (mismatch >= 0) {
    const hashes = lines.slice(mismatch + 1).filter((l) => /^\s+(downloaded|go\.sum):/.test(l));
    const security = lines.some((l) => l.trim() === "SECURITY ERROR") ? ["SECURITY ERROR"] : [];
    return { kind: "checksum mismatch", lines: [lines[mismatch]!, ...hashes.slice(0, 2), ...security] };
  }
  const missing = lines.filter((l) => l.includes("missing go.sum entry"));
  if (missing.length > 0) return { kind: "missing go.sum entry", lines: missing };
  return undefined;
}

/**
 * The kept build cache: made root's and 0700 when absent; refused when it is
 * anything but a folder of root's that no one else may write (compiled code
 * from there ends up in a program root installs), or reached through a link.
 */
export async function ownBuildCache(dir: string): Promise<void> {
  const variable = settingVariables.goCache;
  let found = await lstat(dir).catch(() => undefined);
  if (!found) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    found = await lstat(dir);
  }
  const problem = found.isSymbolicLink()
    ? "a link"
    : !found.isDirectory()
      ? "not a folder"
      : found.uid !== 0
        ? `owned by uid ${found.uid}, not root`
        : (found.mode & 0o022) !== 0
          ? `writable by others (mode ${(found.mode & 0o777).toString(8)})`
          : undefined;
  if (problem)
    throw new UserError(
      `${variable}=${dir} is ${problem}: go's build cache decides what t3-dispatch is compiled from`,
      `point ${variable} at a folder only root owns and writes (e.g. /var/cache/devvm/go-build), or unset it`,
    );
}

/** `go build` of the program in `source` into `output`, `scratch` holding all go writes but the kept build cache. */
export async function goBuild(
  ctx: Pick<BuildContext, "log" | "settings">,
  { source, output, scratch }: { source: string; output: string; scratch: string },
): Promise<void> {
  await mkdir(`${scratch}/tmp`, { recursive: true });
  const goCache = ctx.settings.goCache;
  if (goCache) await ownBuildCache(goCache);
  try {
    await run(ctx, "go", ["build", "-trimpath", "-buildvcs=false", "-o", output, "."], {
      cwd: source,
      env: goBuildEnvironment(scratch, ctx.settings.goProxy, goCache),
      timeoutMs: 10 * 60_000,
    });
  } catch (error) {
    const problem = error instanceof CommandError ? goModuleProblem(error.stderr) : undefined;
    if (!problem) throw error;
    const proxy = ctx.settings.goProxy
      ? `${settingVariables.goProxy}=${ctx.settings.goProxy}`
      : `Go's default proxy (${settingVariables.goProxy} is unset)`;
    throw new UserError(
      `go build refused a module of ${source}: ${problem.kind}\n${problem.lines.join("\n")}`,
      problem.kind === "checksum mismatch"
        ? `the module ${proxy} served is not the one ${source}/go.sum records: check that proxy (and ${settingVariables.goProxy}); never edit go.sum to match what it served`
        : `${source}/go.sum lacks the module's hash, and the build never adds one: update go.sum in the source (go mod tidy where its proxy is reachable) and commit it`,
    );
  }
}
