// `build.ts image`: the devvm as a root file system archive (lib/image/).
import path from "node:path";
import { UserError } from "../../core/errors.ts";
import type { Pins } from "../../inputs/pins.ts";
import { requireCompletePins } from "../../inputs/required-pins.ts";
import { buildImage, DEFAULT_IMAGE_RELEASE } from "../../image/build-image.ts";
import { releaseByKey, type Release } from "../../machine/releases.ts";
import { stages } from "../../../stages/index.ts";
import type { CliOptions } from "../args.ts";
import type { Command } from "../command.ts";
import { say, writeStdout } from "../terminal.ts";

export const imageCommand: Command = {
  async run({ cli, repoDir, inputsDir, inputs, outputDir, settings, log, session }) {
    // The build inside needs the apt pins of the image's release and every hash: said now, not after the base is made.
    const release = imageRelease(cli);
    if (!inputs.pins.apt[release.key as keyof Pins["apt"]])
      throw new UserError(
        `pins.json has no apt pins for ${release.name} (apt.${release.key}): the image's release`,
        `run \`npm run lock:release -- ${release.key}\` (docs/cli.md "lock"), or build the image of a release pins.json has`,
      );
    requireCompletePins(stages, inputs, settings, { underRoot: false, canSkip: false });
    const record = await buildImage({ repoDir, inputsDir, inputs, release, outputDir, settings, log, session });
    say(
      `image: ${path.join(outputDir, record.archive.file)}\n  ${record.archive.size} bytes, sha256 ${record.archive.sha256}\n  record: ${path.join(outputDir, "devvm-image.json")}`,
    );
    if (cli.json) await writeStdout(`${JSON.stringify(record, null, 2)}\n`);
    return { outcome: "ok" };
  },
};

/** The release --release named (parseCli refused any other and gave the default). */
function imageRelease(cli: CliOptions): Release {
  const key = cli.release ?? DEFAULT_IMAGE_RELEASE;
  const release = releaseByKey(key);
  if (!release) throw new Error(`no release ${key}: parseCli lets only known keys through`);
  return release;
}
