// Runs before each container test file (vitest.config.ts's setupFiles for
// the slow project). When the image test is in the run, and another file
// before it (the sequencer says so), its build runs beside the crash test's
// rounds and the light tests (image-build.ts): the crash test starts it once
// its clean build is committed; when the crash test is not in the run, the
// first file does.
import { beforeAll, expect } from "vitest";
import { startImageBuildBeside } from "./image-build.ts";

beforeAll(() => {
  if (!expect.getState().testPath?.endsWith("/test/crash.test.ts")) startImageBuildBeside();
});
