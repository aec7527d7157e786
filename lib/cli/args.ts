// Command-line parsing for build.ts. Usage errors are user errors (exit 2).
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { DEFAULT_IMAGE_RELEASE } from "../image/build-image.ts";
import { RELEASES, releaseByKey } from "../machine/releases.ts";

import { EXIT } from "./exit-code.ts";

// Where the codes are chosen (exit-code.ts); named here too, for what imported them from here.
export { EXIT };

export const USAGE = `Usage: build.ts [options]
       build.ts lock [--update NAME[@VERSION]]... | build.ts lock --apt-only
       build.ts offboard USER [--plan]
       build.ts image [--release KEY] [--inputs DIR] [--output DIR]

Builds this machine into the devvm: runs every stage in pipeline order, as root.
\`lock\` refreshes pins.json from what the sources offer now (apt candidates,
npm integrities, release hashes); versions move only with --update
(node, npm, claude-code, codex, kubelogin; t3 only as t3@VERSION). It writes
pins.json only when every entry resolved, else names each one and why.
\`offboard USER\` archives the home of a user a build has cut (dropped from
roster.yaml, login locked), then deletes the account; only when named.
\`image\` makes the devvm as a root file system archive, the same bytes on every
run from the same commit and inputs (output/devvm-image.tar.gz and its record
devvm-image.json): a base of the release made here (debootstrap, or
mmdebstrap for Ubuntu), every stage run inside it that needs no booted
machine; the rest runs on its first boot.

Options:
  --list             print the stages in order with their descriptions
  --plan             change nothing; print what each stage would change
                     (exit ${EXIT.changesPending} when something would)
  --stage a,b        run only these stages (in pipeline order)
  --from a           run stage a and every stage after it
  --skip a,b         leave these stages out
  --root DIR         manage every path under DIR instead of /
  --inputs DIR       read roster.yaml, packages.txt, pins.json from DIR
                     (default: the builder's own folder)
  --output DIR       write report.json and manifest.json to DIR
                     (default: output/ in the builder's folder)
  --apt-only         lock only: refresh only this release's apt pins, ask no
                     other source (what \`npm run lock:release\` runs in a
                     container of another release)
  --release KEY      image only: the image's release, one of
                     ${RELEASES.map((r) => r.key).join(", ")} (default: ${DEFAULT_IMAGE_RELEASE})
  --for-image        build an image's root (what \`image\` runs inside it): the
                     stages that need the booted machine are skipped
  --t3-back-to V     the explicit way back to an older t3 (pins.json pinned at
                     V): every t3 database is put back as its newest copy from
                     t3 V, then all instances restart on V
  --strict           make warnings errors (e.g. Vault unreachable, a missing secret field)
  --json             print the report as JSON on stdout
  --debug            show stacks and full command output
  -h, --help         this text

Exit codes: ${EXIT.ok} success; ${EXIT.stageFailed} a stage failed (lock: an entry could not be resolved,
pins.json unchanged); ${EXIT.badInput} bad input or usage (also: pins.json lacks a hash the stages need);
${EXIT.changesPending} changes pending (--plan); ${EXIT.buildRunning} another build is running; ${EXIT.notRoot} not run as root;
${EXIT.bug} a bug in the builder.`;

export interface CliOptions {
  command: "build" | "lock" | "offboard" | "image";
  /** The user named by `offboard USER`. */
  user?: string;
  update: string[];
  /** lock --apt-only: only this release's apt pins. */
  aptOnly?: boolean;
  help: boolean;
  list: boolean;
  plan: boolean;
  json: boolean;
  debug: boolean;
  strict: boolean;
  /** --t3-back-to VERSION: the way back below the newest t3 that has run. */
  t3BackTo?: string;
  forImage: boolean;
  stage?: string[];
  from?: string;
  skip?: string[];
  root?: string;
  inputs?: string;
  output?: string;
  /** image: the key of the image's release (lib/machine/releases.ts), known and defaulted. */
  release?: string;
}

export function parseCli(argv: string[]): CliOptions {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h", default: false },
        list: { type: "boolean", default: false },
        plan: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        debug: { type: "boolean", default: false },
        strict: { type: "boolean", default: false },
        "for-image": { type: "boolean", default: false },
        stage: { type: "string" },
        from: { type: "string" },
        skip: { type: "string" },
        root: { type: "string" },
        inputs: { type: "string" },
        output: { type: "string" },
        release: { type: "string" },
        update: { type: "string", multiple: true },
        "apt-only": { type: "boolean", default: false },
        "t3-back-to": { type: "string" },
      },
    }));
  } catch (error) {
    throw new UserError((error as Error).message, "see `build.ts --help`");
  }
  const [command = "build", ...extra] = positionals;
  if (command !== "build" && command !== "lock" && command !== "offboard" && command !== "image")
    throw new UserError(
      `unknown command "${command}"`,
      "the commands are build (the default), lock, offboard and image",
    );
  const user = command === "offboard" ? extra.shift() : undefined;
  if (command === "offboard" && !user)
    throw new UserError("offboard needs the user's name", "build.ts offboard USER [--plan]");
  if (extra.length > 0) throw new UserError(`unexpected arguments: ${extra.join(" ")}`, "see `build.ts --help`");
  const buildOnly = (["plan", "stage", "from", "skip", "root", "for-image", "t3-back-to"] as const).filter(
    (o) => values[o] !== undefined && values[o] !== false,
  );
  if (command === "image" && buildOnly.length > 0)
    throw new UserError(
      `image builds the whole pipeline into its own root: --${buildOnly.join(", --")} do not apply`,
      "build.ts image [--release KEY] [--inputs DIR] [--output DIR]",
    );
  if (values.release !== undefined && command !== "image")
    throw new UserError("--release goes with the image command", "build.ts image --release KEY");
  const release = command === "image" ? (values.release ?? DEFAULT_IMAGE_RELEASE) : undefined;
  if (release !== undefined && !releaseByKey(release))
    throw new UserError(
      `unknown release "${release}"`,
      `the releases are ${RELEASES.map((r) => r.key).join(", ")}: build.ts image --release KEY`,
    );
  if (values["t3-back-to"] !== undefined && command !== "build")
    throw new UserError("--t3-back-to goes with a build", "build.ts --stage t3 --t3-back-to VERSION");
  if (values["t3-back-to"] !== undefined && !/^[0-9A-Za-z.+_-]+$/.test(values["t3-back-to"]))
    throw new UserError(
      `--t3-back-to ${values["t3-back-to"]}: not a version`,
      "build.ts --stage t3 --t3-back-to 0.0.26",
    );
  if (values["apt-only"] && command !== "lock")
    throw new UserError("--apt-only goes with the lock command", "build.ts lock --apt-only");
  if (values["apt-only"] && values.update)
    throw new UserError("--apt-only refreshes only apt pins: it moves no --update", "build.ts lock --apt-only");
  if (values.update && command !== "lock")
    throw new UserError("--update goes with the lock command", "build.ts lock --update NAME[@VERSION]");
  const list = (value: string | undefined) =>
    value
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  return {
    command,
    ...(user !== undefined ? { user } : {}),
    update: values.update ?? [],
    ...(values["apt-only"] ? { aptOnly: true } : {}),
    help: values.help,
    list: values.list,
    plan: values.plan,
    json: values.json,
    debug: values.debug,
    strict: values.strict,
    ...(values["t3-back-to"] !== undefined ? { t3BackTo: values["t3-back-to"] } : {}),
    forImage: values["for-image"],
    ...(values.stage !== undefined ? { stage: list(values.stage) } : {}),
    ...(values.from !== undefined ? { from: values.from } : {}),
    ...(values.skip !== undefined ? { skip: list(values.skip) } : {}),
    ...(values.root !== undefined ? { root: values.root } : {}),
    ...(values.inputs !== undefined ? { inputs: values.inputs } : {}),
    ...(values.output !== undefined ? { output: values.output } : {}),
    ...(release !== undefined ? { release } : {}),
  };
}
