// The apt pins of another release, from a lock run on a machine of that
// release: `build.ts lock` refreshes only the release it runs on (apt's
// candidates are the machine's own), so for each release named here this
// boots a fresh container of it (the test boxes' base, made here with
// debootstrap or mmdebstrap: test/support/harness/base-image.ts), runs the
// builder's `lock --apt-only` there on a copy of the inputs (apt's
// candidates from the release's own archive, which apt reaches over http:
// no other source is asked), and puts that release's block of apt pins into
// ./pins.json. Every other entry stays as it is: they are this machine's
// lock to refresh (`build.ts lock`).
//
//   npm run lock:release -- ubuntu-24.04 [debian-12 ...]     (as root, needs dockerd: scripts/with-docker.sh)
import path from "node:path";
import { replaceAptPins } from "../lib/cli/commands/lock.ts";
import { UserError } from "../lib/core/errors.ts";
import type { Pins } from "../lib/inputs/pins.ts";
import { RELEASES, releaseByKey } from "../lib/machine/releases.ts";
import { ensureBaseImage } from "../test/support/harness/base-image.ts";
import { PROJECT_DIR } from "../test/support/harness/build-in-vm.ts";
import { BUILDER_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "../test/support/harness/copy-project.ts";
import { startDevvm } from "../test/support/harness/devvm-container.ts";

const INPUTS_IN_BOX = "/opt/devvm-lock-inputs";
const say = (line: string) => process.stderr.write(`lock:release: ${line}\n`);

const keys = process.argv.slice(2);
const unknown = keys.filter((key) => !releaseByKey(key));
if (keys.length === 0 || unknown.length > 0)
  throw new UserError(
    keys.length === 0 ? "name the releases to lock" : `unknown release ${unknown.join(", ")}`,
    `the releases: ${RELEASES.map((r) => r.key).join(", ")}; e.g. npm run lock:release -- ubuntu-24.04`,
  );

const pinsFile = path.join(PROJECT_DIR, "pins.json");
for (const key of keys) {
  const release = releaseByKey(key)!;
  say(`${release.name}: booting a fresh box`);
  await using vm = await startDevvm({ image: await ensureBaseImage(key) });
  await vm.copyProject(PROJECT_DIR);
  await vm.exec(
    `mkdir -p ${INPUTS_IN_BOX} && cp ${PROJECT_DIR_IN_CONTAINER}/{packages.txt,pins.json,roster.yaml} ${INPUTS_IN_BOX}/`,
    {
      check: true,
    },
  );
  say(`${release.name}: build.ts lock in container ${vm.id.slice(0, 12)}`);
  const lock = await vm.exec([
    ...BUILDER_IN_CONTAINER,
    "lock",
    "--apt-only",
    "--inputs",
    INPUTS_IN_BOX,
    "--output",
    "/tmp/devvm-lock-output",
  ]);
  process.stderr.write(lock.stderr.replace(/^/gm, `${key}| `));
  if (lock.exitCode !== 0)
    throw new UserError(`build.ts lock on ${release.name} exited ${lock.exitCode} (its output is above)`);
  const found = JSON.parse(await vm.readFile(`${INPUTS_IN_BOX}/pins.json`)) as Pins;
  const apt = found.apt[key as keyof Pins["apt"]];
  if (!apt) throw new Error(`the lock on ${release.name} wrote no apt.${key}`);
  const changes = await replaceAptPins(pinsFile, key, apt, found.aptSnapshot?.[key as keyof Pins["apt"]]);
  console.log(
    changes.length === 0 ? `apt.${key}: up to date` : `pins.json changed:\n${changes.map((c) => `  ${c}`).join("\n")}`,
  );
}
