// The builder on the releases besides the test release (the whole suite runs
// on TEST_RELEASE, test/support/harness/base-image.ts) and the live box's
// (Ubuntu 24.04, which test/adoption.test.ts takes over with these same
// checks): on a fresh box of each, prepared as the old scripts left the live
// devvm, one build started by `./bootstrap.sh` takes it over from scratch.
// Then dpkg-query shows exactly that release's apt pins, a second build
// changes nothing, and every user signs in through t3-dispatch, built there
// by that release's own Go through the Go module proxy stand-in. Checked
// from outside: packages, files, units, HTTP answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSettings } from "../lib/inputs/settings.ts";
import type { Pins } from "../lib/inputs/pins.ts";
import { baseMirrors } from "../lib/image/release-base.ts";
import { RELEASES, type Release } from "../lib/machine/releases.ts";
import { TEST_RELEASE } from "./support/harness/base-image.ts";
import { buildIn, nonIdempotentStages, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import {
  ENV_FILES,
  INPUTS,
  LIVE_BOX_RELEASE,
  OLD,
  OLD_BOX,
  rosterYaml,
  signIn,
  takeOverWithBootstrap,
  TOKEN,
  USERS,
  VAULT_SECRETS,
  takeoverChecksOnItsRelease,
} from "./support/harness/adoption-box.ts";
import { startAptArchiveStandIn, type AptArchiveStandIn } from "./support/stand-ins/apt-archive.ts";
import { startVaultStandIn, type VaultStandIn } from "./support/stand-ins/vault.ts";
import { startStandInSources, writeInputs, type StandInSources } from "./support/stand-ins/sources.ts";

const OTHERS = RELEASES.filter((release) => release.key !== TEST_RELEASE && release.key !== LIVE_BOX_RELEASE);

/** Whether the release's archive answers here; a release that cannot be reached is skipped, saying so. */
async function archiveReachable(release: Release): Promise<boolean> {
  const { archive } = await baseMirrors(release, readSettings());
  const url = `${archive}/dists/${release.codename}/Release`;
  const ok = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(10_000) })
    .then((r) => r.ok)
    .catch(() => false);
  if (!ok) process.stderr.write(`skipping ${release.name}: its archive does not answer (${url})\n`);
  return ok;
}
const reachable = await Promise.all(OTHERS.map(archiveReachable));

describe.each(OTHERS.filter((_, i) => !reachable[i]))("$name", () => {
  it.skip("its archive does not answer here: the takeover of an old-scripts box is not tried", () => {});
});

describe.each(OTHERS.filter((_, i) => reachable[i]))(
  "taking over an old-scripts box of $name from scratch",
  (release) => {
    let sources: StandInSources;
    let snapshot: AptArchiveStandIn;
    let vault: VaultStandIn;
    let vm: DevvmContainer;
    let first: BuildRun;
    // The snapshot archive a stand-in that must never be asked: the release's mirror offers every pin.
    const env = () => ({
      ...sources.env,
      VAULT_ADDR: vault.address,
      VAULT_TOKEN: TOKEN,
      DEVVM_APT_SNAPSHOT_URL: snapshot.snapshotUrl,
    });
    const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
    const aptPins = () => sources.pins.apt[release.key as keyof Pins["apt"]]!;

    beforeAll(async () => {
      [sources, snapshot] = await Promise.all([startStandInSources(), startAptArchiveStandIn()]);
      vault = await startVaultStandIn(TOKEN, VAULT_SECRETS);
      vm = await startFreshVm("project", release.key);
      await writeInputs(vm, INPUTS, sources.pins);
      await vm.exec(["sh", "-c", `printf %s "$R" > ${INPUTS}/roster.yaml`], {
        check: true,
        env: { R: rosterYaml(USERS) },
      });
      await vm.exec(OLD_BOX, { check: true });
      // The README's command, from the project's folder: bootstrap.sh reads this release's apt pins itself.
      first = await takeOverWithBootstrap(vm, env());
      process.stderr.write(`${release.name}: bootstrap.sh exit ${first.exitCode}\n${first.log}`);
    });
    afterAll(async () => {
      await vm?.[Symbol.asyncDispose]();
      await vault?.[Symbol.asyncDispose]();
      await sources?.[Symbol.asyncDispose]();
      await snapshot?.[Symbol.asyncDispose]();
    });

    takeoverChecksOnItsRelease(release, () => ({
      vm,
      first,
      snapshotRequests: () => snapshot.requests(),
      aptPins: aptPins(),
    }));

    it("keeps every user's port and env lines, and retires the old units", async () => {
      for (const [user, text] of Object.entries(ENV_FILES))
        expect(await vm.readFile(`/etc/t3-serve/${user}.env`), user).toContain(text);
      const timers = await sh("systemctl list-timers --all --no-pager --no-legend");
      for (const name of OLD) expect(timers).not.toContain(`${name}.timer`);
      expect(timers).toContain("devvm-reconcile.timer");
    });

    it("signs each user in through t3-dispatch, answered by their own instance", async () => {
      for (const [os, user] of Object.entries(USERS)) {
        const response = await signIn(`${user.authentik_user}@example.org`);
        expect(response.status, os).toBe(200);
        expect(response.headers.get("x-t3-stand-in-base-dir")).toBe(`/home/${os}/.t3`);
      }
      expect((await signIn("mallory@example.org")).status).toBe(403);
    });

    it("a second build changes nothing", async () => {
      const second = await buildIn(vm, env(), "--inputs", INPUTS);
      expect(second.exitCode, second.log).toBe(0);
      expect(nonIdempotentStages(second.report), second.log).toEqual([]);
    });
  },
);
