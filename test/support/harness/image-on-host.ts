// `npx tsx build.ts image` run on this host as root, as an admin would, with
// the stand-in sources: the project's roster and packages with the
// stand-ins' pins as its inputs. Shared by test/image.test.ts and
// `npm run repro`.
import { spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { settingVariables } from "../../../lib/inputs/settings.ts";
import { TEST_RELEASE } from "./base-image.ts";
import { PROJECT_DIR } from "./build-in-vm.ts";
import type { StandInSources } from "../stand-ins/sources.ts";

export interface ImageRun {
  exitCode: number;
  /** Its progress lines (stderr). */
  log: string;
  /** Where it wrote the archive and its record. */
  outDir: string;
}

/**
 * Builds an image into DIR/out from inputs in DIR/inputs. `inputsFrom`: a
 * folder whose roster.yaml, packages.txt or pins.json replace those inputs.
 * Its lines go to stderr as they come, each after `label| ` when given.
 */
export async function buildImageOnHost(
  sources: StandInSources,
  dir: string,
  options: { env?: Record<string, string>; inputsFrom?: string; label?: string } = {},
): Promise<ImageRun> {
  const inputs = path.join(dir, "inputs");
  await fs.mkdir(inputs, { recursive: true });
  for (const name of ["roster.yaml", "packages.txt"])
    await fs.copyFile(path.join(PROJECT_DIR, name), path.join(inputs, name));
  await fs.writeFile(path.join(inputs, "pins.json"), `${JSON.stringify(sources.pins, null, 2)}\n`);
  for (const name of ["roster.yaml", "packages.txt", "pins.json"]) {
    if (options.inputsFrom && existsSync(path.join(options.inputsFrom, name)))
      await fs.copyFile(path.join(options.inputsFrom, name), path.join(inputs, name));
  }
  const outDir = path.join(dir, "out");
  // The image builds on this host: Go's build cache kept for the test boxes is a path in them, not here.
  const { DEVVM_GO_CACHE: _inBoxes, ...standIns } = sources.env;
  const env = {
    ...process.env,
    ...standIns,
    [settingVariables.t3DispatchSource]: path.join(PROJECT_DIR, "test/support/fixtures/t3-dispatch"),
    ...options.env,
  };
  // The test boxes' release: the image test checks the release the other container tests boot.
  const args = ["--release", TEST_RELEASE, "--inputs", inputs, "--output", outDir];
  const child = spawn("npx", ["tsx", "build.ts", "image", ...args], {
    cwd: PROJECT_DIR,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (chunk: Buffer) => {
    log += chunk.toString();
    process.stderr.write(options.label ? chunk.toString().replace(/^(?=.)/gm, `${options.label}| `) : chunk);
  });
  const code = await new Promise<number | null>((resolve, reject) => child.on("error", reject).on("close", resolve));
  return { exitCode: code ?? -1, log, outDir };
}
