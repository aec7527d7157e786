// Runs before each container test file (vitest.config.ts's setupFiles for
// the slow project). When the image test is in the run, and another file
// before it (the sequencer says so), its build starts at the first file
// after the crash test and runs beside the light tests (image-build.ts).
import { beforeAll, expect, inject } from "vitest";
import { imageBuild } from "./image-build.ts";

declare module "vitest" {
  export interface ProvidedContext {
    devvmImageBuildBeside: boolean;
  }
}

beforeAll(() => {
  if (inject("devvmImageBuildBeside") && !expect.getState().testPath?.endsWith("/test/crash.test.ts"))
    void imageBuild();
});
