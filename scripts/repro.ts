// Nightly reproducibility check, from the same commit, with the stand-in
// sources (test/support/stand-ins), as in the tests:
//   boxes:  two from-scratch builds on two fresh containers of the test
//           release; their manifests must be the same (needs dockerd:
//           scripts/with-docker.sh). Before the first, the pins the mirror no
//           longer offers are listed: a build takes them from the snapshot
//           archive, and the admin sees the drift long before a rebuild
//           after a disaster depends on it;
//   images: two `build.ts image` runs on this host (as root); their archives
//           must be the same bytes, else every differing entry is named
//           (path, and what differs: content hash, mode, owner, size, link).
// Prints `identical ...` for each, or the differences and exits 1.
//
//   npm run repro [-- --only boxes|images] [--second-inputs DIR]
//
// --second-inputs DIR: the files in DIR (roster.yaml, packages.txt,
// pins.json) replace the inputs of the second image build: a deliberate
// change, to see the comparison name what it changed and nothing else.
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { diffArchives, formatArchiveDifferences, readArchive } from "../lib/image/compare-archives.ts";
import type { ImageRecord } from "../lib/image/build-image.ts";
import { diffManifests, formatDifferences } from "../lib/output/manifest-diff.ts";
import type { Pins } from "../lib/inputs/pins.ts";
import { parseMadison } from "../lib/machine/apt-snapshot.ts";
import { TEST_RELEASE } from "../test/support/harness/base-image.ts";
import { buildIn, manifestIn, startFreshVm } from "../test/support/harness/build-in-vm.ts";
import type { DevvmContainer } from "../test/support/harness/devvm-container.ts";
import { buildImageOnHost } from "../test/support/harness/image-on-host.ts";
import { startStandInSources, writeInputs, type StandInSources } from "../test/support/stand-ins/sources.ts";

const { values } = parseArgs({ options: { only: { type: "string" }, "second-inputs": { type: "string" } } });
if (values.only && values.only !== "boxes" && values.only !== "images")
  throw new Error(`--only takes boxes or images, not ${values.only}`);
const say = (line: string) => process.stderr.write(`${line}\n`);

/** The release's apt pins the box's mirror no longer offers, one line each, or a line saying there are none. */
async function mirrorDrift(vm: DevvmContainer, pins: Pins): Promise<string> {
  const block = pins.apt[TEST_RELEASE as keyof Pins["apt"]] ?? {};
  const names = Object.keys(block);
  const asked = await vm.exec(`apt-get update -q >/dev/null 2>&1 && apt-cache madison ${names.join(" ")}`, {
    env: { LC_ALL: "C" },
  });
  if (asked.exitCode !== 0)
    return `pins the mirror no longer offers: unknown (apt-get update failed: ${asked.stderr.trim()})`;
  const offered = parseMadison(asked.stdout);
  const gone = names.filter((name) => !offered.get(name)?.includes(block[name]!));
  const time = pins.aptSnapshot?.[TEST_RELEASE as keyof Pins["apt"]] ?? "no time recorded";
  if (gone.length === 0) return `every apt pin of ${TEST_RELEASE} is still offered by the mirror`;
  return [
    `${gone.length} apt pin(s) of ${TEST_RELEASE} the mirror no longer offers (a build takes them from the snapshot archive at ${time}):`,
    ...gone.map((name) => `  ${name} ${block[name]} (the mirror: ${offered.get(name)?.join(", ") || "none"})`),
  ].join("\n");
}

async function buildOnFreshBox(sources: StandInSources, label: string) {
  await using vm = await startFreshVm();
  await writeInputs(vm, "/opt/devvm-inputs", sources.pins);
  if (label === "box 1") console.log(await mirrorDrift(vm, sources.pins));
  say(`${label}: building in container ${vm.id.slice(0, 12)}`);
  const run = await buildIn(vm, sources.env, "--inputs", "/opt/devvm-inputs");
  say(run.log.trimEnd().replace(/^/gm, `${label}| `));
  if (run.exitCode !== 0) throw new Error(`${label}: the build exited ${run.exitCode}`);
  // await before the container is disposed at the end of this scope.
  return await manifestIn(vm);
}

async function compareBoxes(sources: StandInSources): Promise<boolean> {
  const first = await buildOnFreshBox(sources, "box 1");
  const second = await buildOnFreshBox(sources, "box 2");
  const differences = diffManifests(first.manifest, second.manifest);
  if (differences.length === 0 && first.text === second.text) {
    console.log(`identical manifests ${first.sha256}`);
    return true;
  }
  console.log(`manifests differ (${first.sha256} vs ${second.sha256}):`);
  console.log(
    formatDifferences(differences, ["box 1", "box 2"]) ||
      "(same entries, different bytes: the manifest's serialisation is not stable)",
  );
  return false;
}

async function buildImage(
  sources: StandInSources,
  dir: string,
  label: string,
  inputsFrom?: string,
): Promise<ImageRecord> {
  say(`${label}: build.ts image`);
  const run = await buildImageOnHost(sources, dir, { label, ...(inputsFrom ? { inputsFrom } : {}) });
  if (run.exitCode !== 0) throw new Error(`${label}: build.ts image exited ${run.exitCode}`);
  return JSON.parse(await fs.readFile(path.join(run.outDir, "devvm-image.json"), "utf8")) as ImageRecord;
}

async function compareImages(sources: StandInSources): Promise<boolean> {
  const work = await fs.mkdtemp(path.join(tmpdir(), "devvm-repro-"));
  try {
    const [a, b] = [path.join(work, "1"), path.join(work, "2")];
    const first = await buildImage(sources, a, "image 1");
    const second = await buildImage(sources, b, "image 2", values["second-inputs"]);
    if (first.archive.sha256 === second.archive.sha256) {
      console.log(`identical images ${first.archive.sha256} (${first.archive.size} bytes)`);
      return true;
    }
    const differences = diffArchives(
      await readArchive(path.join(a, "out", first.archive.file)),
      await readArchive(path.join(b, "out", second.archive.file)),
      ["image 1", "image 2"],
    );
    console.log(`images differ (${first.archive.sha256} vs ${second.archive.sha256}), ${differences.length} entries:`);
    console.log(
      formatArchiveDifferences(differences) || "(same entries, different bytes: the archive's writing is not stable)",
    );
    return false;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

await using sources = await startStandInSources();
const boxes = values.only === "images" || (await compareBoxes(sources));
const images = values.only === "boxes" || (await compareImages(sources));
if (!boxes || !images) process.exitCode = 1;
