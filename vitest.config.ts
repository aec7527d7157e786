import { defineConfig } from "vitest/config";

// Two projects: "fast" runs the unit tests that sit beside the code; "slow"
// runs the container tests under test/, which boot Debian with systemd and
// need a running dockerd. `npm run test:fast` skips the slow ones.
export default defineConfig({
  test: {
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
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
          // One container build at a time: the machine has two cores.
          fileParallelism: false,
        },
      },
    ],
  },
});
