import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";

// Two projects: "fast" runs the unit tests that sit beside the code; "slow"
// runs the container tests under test/, which boot Debian with systemd and
// need a running dockerd. `npm run test:fast` skips the slow ones.
//
// They run side by side, three files at a time: the boxes share the host's
// network and a built devvm listens on fixed ports, so each slow file holds
// the fixed-ports lock while it runs (test/support/harness/fixed-ports.ts),
// but the image test only while its image runs as a container. The unit
// tests and the image build on the host run beside the one box.

/** The image build first (the longest, and beside the boxes), then the crash test (its clean build is the built box), the unit tests, the rest. */
class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (spec: TestSpecification) => {
      if (spec.moduleId.endsWith("/test/image.test.ts")) return 0;
      if (spec.moduleId.endsWith("/test/crash.test.ts")) return 1;
      return spec.project.name === "fast" ? 2 : 3;
    };
    // Array.prototype.sort is stable: the base order holds within a rank.
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    // Two cores: one box, the image build and the unit tests at once; a
    // slow file that waits for the fixed ports costs a worker, not a core.
    maxWorkers: 3,
    sequence: { sequencer: SlowFirst },
    projects: [
      {
        test: {
          name: "fast",
          include: ["lib/**/*.test.ts", "stages/**/*.test.ts", "scripts/**/*.test.ts", "build.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "slow",
          include: ["test/**/*.test.ts"],
          setupFiles: ["test/support/harness/one-box-at-a-time.ts"],
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
        },
      },
    ],
  },
});
