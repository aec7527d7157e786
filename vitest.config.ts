import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";

// Two projects: "fast" runs the unit tests that sit beside the code; "slow"
// runs the container tests under test/, which boot Debian with systemd and
// need a running dockerd. `npm run test:fast` skips the slow ones.

/**
 * The crash test before the other slow files: its clean build is the built
 * box (test/support/harness/built-box.ts) the tests about one part of a
 * devvm start from, so when docker has none for this checkout yet, one
 * build serves both.
 */
class CrashTestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const first = (spec: TestSpecification) => spec.moduleId.endsWith("/test/crash.test.ts");
    // Array.prototype.sort is stable: the base order holds for the rest.
    return (await super.sort(files)).sort((a, b) => Number(first(b)) - Number(first(a)));
  }
}

export default defineConfig({
  test: {
    sequence: { sequencer: CrashTestFirst },
    projects: [
      {
        test: {
          name: "fast",
          include: ["lib/**/*.test.ts", "stages/**/*.test.ts", "scripts/**/*.test.ts", "build.test.ts"],
          testTimeout: 20_000,
          // Both cores (the default leaves one free): 76 s -> 37 s measured here.
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: "slow",
          include: ["test/**/*.test.ts"],
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
          // One file at a time: the boxes share the host's network (a built
          // devvm listens on fixed ports), and on two cores a second build
          // beside the first made both several times slower (measured: the
          // crash test 180 s alone, 540 s beside the image build).
          fileParallelism: false,
        },
      },
    ],
  },
});
