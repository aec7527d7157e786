// Nightly reproducibility check: two from-scratch builds on two fresh
// Debian 12 boxes, compared. Prints `identical <sha256 of manifest.json>`,
// or the differing entries and exits 1. Needs dockerd (scripts/with-docker.sh).
// Software comes from the stand-in sources (test/stand-ins), as in the tests.
import { diffManifests, formatDifferences } from "../lib/manifest-diff.ts";
import { buildIn, manifestIn, startFreshVm } from "../test/build-in-vm.ts";
import { startStandInSources, writeInputs, type StandInSources } from "../test/stand-in-sources.ts";

async function buildOnFreshBox(sources: StandInSources, label: string) {
  await using vm = await startFreshVm();
  await writeInputs(vm, "/opt/devvm-inputs", sources.pins);
  process.stderr.write(`${label}: building in container ${vm.id.slice(0, 12)}\n`);
  const run = await buildIn(vm, sources.env, "--inputs", "/opt/devvm-inputs");
  process.stderr.write(`${run.log.trimEnd().replace(/^/gm, `${label}| `)}\n`);
  if (run.exitCode !== 0) throw new Error(`${label}: the build exited ${run.exitCode}`);
  // await before the container is disposed at the end of this scope.
  return await manifestIn(vm);
}

await using sources = await startStandInSources();
const first = await buildOnFreshBox(sources, "box 1");
const second = await buildOnFreshBox(sources, "box 2");
const differences = diffManifests(first.manifest, second.manifest);
if (differences.length === 0 && first.text === second.text) {
  console.log(`identical ${first.sha256}`);
} else {
  console.log(`manifests differ (${first.sha256} vs ${second.sha256}):`);
  console.log(formatDifferences(differences, ["box 1", "box 2"]) || "(same entries, different bytes: the manifest's serialisation is not stable)");
  process.exitCode = 1;
}
