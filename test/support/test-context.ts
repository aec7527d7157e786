// A BuildContext over a temporary root, for unit tests beside the code.
import { releaseByKey } from "../../lib/machine/releases.ts";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Accounts } from "../../lib/machine/accounts.ts";
import { BuildSession } from "../../lib/core/build-session.ts";
import type { BuildContext } from "../../lib/core/context.ts";
import { isSkip, type Stage } from "../../lib/core/stage.ts";
import type { Inputs } from "../../lib/inputs/index.ts";
import { readSettings } from "../../lib/inputs/settings.ts";

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
    // A release without an extra apt suite: a test's apt stage never writes into this host's /etc/apt.
    release: releaseByKey("debian-13")!,
    planOnly: false,
    strict: false,
    repoDir: path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../.."),
    accounts: new Accounts(dir),
    cacheDir: path.join(dir, ".cache"),
    inputsDir: path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../.."),
    session: new BuildSession(),
    cleanups: [],
    log: { info: () => {}, debug: () => {} },
    ...overrides,
  };
  return { dir, ctx, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A test root with its own account files, so useradd/groupadd --root work on it. */
export function makeTestRootWithAccounts(overrides: Partial<BuildContext> = {}): TestRoot {
  const root = makeTestRoot(overrides);
  mkdirSync(path.join(root.dir, "etc"));
  writeFileSync(path.join(root.dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  writeFileSync(path.join(root.dir, "etc/group"), "root:x:0:\n");
  writeFileSync(path.join(root.dir, "etc/shadow"), "root:*:19000:0:99999:7:::\n");
  writeFileSync(path.join(root.dir, "etc/gshadow"), "root:*::\n");
  return root;
}

/** A stage's check, then its apply with what check found (plan included), as the runner does. */
export async function checkThenApply<P>(stage: Stage<P>, ctx: BuildContext) {
  const check = await stage.check(ctx);
  if (isSkip(check)) throw new Error(`${stage.name} skipped: ${check.skip}`);
  return stage.apply(ctx, check);
}

/** A port on 127.0.0.1 that nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A pid that no process has now: the name of a killed build's leftovers. */
export function deadPid(): number {
  for (let pid = 3_999_999; ; pid--) if (!existsSync(`/proc/${pid}`)) return pid;
}
