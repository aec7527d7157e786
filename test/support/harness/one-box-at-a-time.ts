// Setup file of the slow project: each of its test files holds the fixed
// ports (fixed-ports.ts) from its first hook to its last, so its boxes never
// run beside another file's, while the unit tests and the image build run on.
import { afterAll, beforeAll } from "vitest";
import { holdFixedPorts, type FixedPorts } from "./fixed-ports.ts";

// These hold the ports themselves, only around their boxes.
const HOLD_THEIR_OWN = ["test/image.test.ts"];

let ports: FixedPorts | undefined;

// The empty pattern is vitest's: it reads the first argument as fixtures; the file comes second.
// eslint-disable-next-line no-empty-pattern
beforeAll(async ({}, suite) => {
  if (HOLD_THEIR_OWN.some((file) => suite.file.filepath.endsWith(`/${file}`))) return;
  ports = await holdFixedPorts(suite.name);
});

afterAll(async () => {
  await ports?.release();
});
