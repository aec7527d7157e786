// A BuildContext over a temporary root, for unit tests beside the code.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Accounts } from "./accounts.ts";
import type { BuildContext } from "./context.ts";
import type { Inputs } from "./inputs/index.ts";
import { readSettings } from "./settings.ts";

export interface TestRoot extends Disposable {
  dir: string;
  ctx: BuildContext;
}

export function makeTestRoot(overrides: Partial<BuildContext> = {}): TestRoot {
  const dir = mkdtempSync(path.join(tmpdir(), "devvm-test-"));
  const ctx: BuildContext = {
    root: dir,
    inputs: {} as Inputs,
    settings: readSettings({}),
    planOnly: false,
    strict: false,
    repoDir: path.dirname(path.dirname(fileURLToPath(import.meta.url))),
    accounts: new Accounts(dir),
    cacheDir: path.join(dir, ".cache"),
    inputsDir: path.dirname(path.dirname(fileURLToPath(import.meta.url))),
    cleanups: [],
    log: { info: () => {}, debug: () => {} },
    ...overrides,
  };
  return { dir, ctx, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}
