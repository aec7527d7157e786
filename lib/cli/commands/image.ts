// `build.ts image`: the devvm as a root file system archive (lib/image/).
import path from "node:path";
import { requireCompletePins } from "../../inputs/required-pins.ts";
import { buildImage, DEFAULT_IMAGE_RELEASE } from "../../image/build-image.ts";
import { releaseByKey, type Release } from "../../machine/releases.ts";
import { stages } from "../../../stages/index.ts";
import type { CliOptions } from "../args.ts";
import type { Command } from "../command.ts";
import { say, writeStdout } from "../terminal.ts";

export const imageCommand: Command = {
  async run({ cli, repoDir, inputsDir, inputs, outputDir, settings, log, session }) {
    // The build inside needs every hash: said now, not after debootstrap.
    requireCompletePins(stages, inputs, settings, { underRoot: false, canSkip: false });
    const release = imageRelease(cli);
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
