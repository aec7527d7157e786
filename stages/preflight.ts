import { existsSync, readFileSync } from "node:fs";
import type { BuildContext } from "../lib/context.ts";
import { hostPath } from "../lib/context.ts";
import { UserError } from "../lib/errors.ts";
import { acquireBuildLock } from "../lib/lock.ts";
import type { Stage } from "../lib/stage.ts";

export const LOCK_PATH = "/run/lock/devvm-build.lock";

export default {
  name: "preflight",
  description: "Refuses to build unless root on Debian 12; takes the one-build-at-a-time lock",
  always: true,
  async check(ctx) {
    if (process.getuid?.() !== 0) throw new UserError("the builder must run as root", "run it as root, e.g. `sudo npx tsx build.ts`");
    requireDebian12(ctx);
    const lock = acquireBuildLock(hostPath(ctx, LOCK_PATH));
    ctx.cleanups.push(() => lock.release());
    if (lock.takenOverFrom) ctx.log.info(`took over the lock left by pid ${lock.takenOverFrom}, which is no longer running`);
    return { changes: [], managed: [] };
  },
  async apply() {
    return [];
  },
} satisfies Stage;

function requireDebian12(ctx: BuildContext): void {
  // An image root has its own os-release; a bare --root folder is built by this host.
  const own = hostPath(ctx, "/etc/os-release");
  const file = existsSync(own) ? own : "/etc/os-release";
  const fields = Object.fromEntries(
    readFileSync(file, "utf8")
      .split("\n")
      .map((line) => /^([A-Z_]+)=("?)(.*)\2$/.exec(line))
      .filter((m) => m !== null)
      .map((m) => [m[1], m[3]]),
  );
  if (fields.ID !== "debian" || fields.VERSION_ID !== "12") {
    throw new UserError(`this is ${fields.PRETTY_NAME ?? "an unknown system"} (${file}); the devvm is Debian 12 (bookworm)`, "run the builder on a Debian 12 machine");
  }
}
