import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";

// Two projects: "fast" runs the unit tests that sit beside the code; "slow"
// runs the container tests under test/, which boot Debian with systemd and
// need a running dockerd. `npm run test:fast` skips the slow ones.

const SLOW = (name: string) => (spec: TestSpecification) => spec.moduleId.endsWith(`/test/${name}`);
const CRASH = SLOW("crash.test.ts");
const IMAGE = SLOW("image.test.ts");
/**
 * The container tests that run beside the image test's build: they start
 * from the built box or a bare one and build little themselves, so the
 * machine has room for the image build (on this host: no box, no fixed
 * port), and none makes an image or listens where it does.
 */
const BESIDE_IMAGE_BUILD = [
  "launcher.test.ts",
  "containment.test.ts",
  "workspaces.test.ts",
  "logins.test.ts",
  "users.test.ts",
  "tmux-persist.test.ts",
  "bootstrap.test.ts",
  "support/stand-ins/stand-ins.test.ts",
  "support/stand-ins/go-proxy.test.ts",
  "support/stand-ins/apt-archive.test.ts",
  "support/stand-ins/git-server.test.ts",
  "support/harness/boot.test.ts",
].map(SLOW);

/**
 * The order of the container tests, one at a time:
 *   1. the crash test: its clean build is the built box
 *      (test/support/harness/built-box.ts) the tests about one part of a
 *      devvm start from, so when docker has none for this checkout yet, one
 *      build serves both;
 *   2. those tests and the other light ones, while the image test's build
 *      runs on the host beside them (test/support/harness/image-build.ts,
 *      started by test/support/harness/slow-setup.ts once the crash test is
 *      done, and only when the image test is in the run);
 *   3. the image test, which boots what was built;
 *   4. the rest, which build in their box.
 */
class SlowOrder extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (spec: TestSpecification) =>
      CRASH(spec) ? 0 : BESIDE_IMAGE_BUILD.some((beside) => beside(spec)) ? 1 : IMAGE(spec) ? 2 : 3;
    // Array.prototype.sort is stable: the base order holds within a rank.
    const sorted = (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
    const image = sorted.find(IMAGE);
    if (image && sorted.some((spec) => spec.project === image.project && !IMAGE(spec)))
      image.project.provide("devvmImageBuildBeside", true);
    return sorted;
  }
}

export default defineConfig({
  test: {
    sequence: { sequencer: SlowOrder },
    projects: [
      {
        test: {
          name: "fast",
          // The unit tests first, alone: beside a box's build they slowed it more than they overlapped.
          sequence: { groupOrder: 0 },
          include: ["lib/**/*.test.ts", "stages/**/*.test.ts", "scripts/**/*.test.ts", "build.test.ts"],
          testTimeout: 20_000,
          // Both cores (the default leaves one free): 76 s -> 37 s measured here.
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: "slow",
          sequence: { groupOrder: 1 },
          include: ["test/**/*.test.ts"],
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
          // One file at a time: the boxes share the host's network (a built
          // devvm listens on fixed ports), and on two cores a second build
          // beside the first made both several times slower (measured: the
          // crash test 180 s alone, 540 s beside the image build).
          fileParallelism: false,
          // One worker for every file, its modules kept between files: the
          // image test's build, started before the light tests, is still
          // the same promise when the image test asks for it.
          isolate: false,
          setupFiles: ["test/support/harness/slow-setup.ts"],
        },
      },
    ],
  },
});
