// `build.ts image`: the devvm as a root file system archive (lib/image/).
import path from "node:path";
import { requireCompletePins } from "../../inputs/required-pins.ts";
import { buildImage } from "../../image/build-image.ts";
import { stages } from "../../../stages/index.ts";
import type { Command } from "../command.ts";
import { say, writeStdout } from "../terminal.ts";

export const imageCommand: Command = {
  async run({ cli, repoDir, inputsDir, inputs, outputDir, settings, log, session }) {
    // The build inside needs every hash: said now, not after debootstrap.
    requireCompletePins(stages, inputs, settings, { underRoot: false, canSkip: false });
    const record = await buildImage({ repoDir, inputsDir, inputs, outputDir, settings, log, session });
    say(
      `image: ${path.join(outputDir, record.archive.file)}\n  ${record.archive.size} bytes, sha256 ${record.archive.sha256}\n  record: ${path.join(outputDir, "devvm-image.json")}`,
    );
    if (cli.json) await writeStdout(`${JSON.stringify(record, null, 2)}\n`);
    return { outcome: "ok" };
  },
};
