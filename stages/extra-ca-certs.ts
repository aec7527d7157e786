import { readFileSync } from "node:fs";
import path from "node:path";
import type { BuildContext } from "../lib/core/context.ts";
import { underRoot } from "../lib/core/context.ts";
import { certificateFiles } from "../lib/sources/download.ts";
import { run } from "../lib/machine/exec.ts";
import { applyResources, planResources, type Resource } from "../lib/machine/files.ts";
import type { Stage } from "../lib/core/stage.ts";

// Behind a TLS-inspecting proxy every HTTPS client on the box needs the
// proxy's CA: installed into the system store, it reaches curl, git, apt and
// (through NODE_EXTRA_CA_CERTS, which build.ts sets) npm and Node.
const DIR = "/usr/local/share/ca-certificates/devvm";

function resources(ctx: BuildContext): Resource[] {
  const files = ctx.settings.extraCaCerts.flatMap(certificateFiles);
  return [
    { kind: "dir", path: DIR, mode: 0o755 },
    // update-ca-certificates takes only *.crt files.
    ...files.map((file): Resource => ({
      kind: "file",
      path: `${DIR}/${path.basename(file).replace(/\.(pem|crt)$/, "")}.crt`,
      mode: 0o644,
      content: readFileSync(file),
    })),
  ];
}

export default {
  name: "extra-ca-certs",
  description:
    "Adds the extra CA certificates of DEVVM_EXTRA_CA_CERTS (a TLS-inspecting proxy's) to the system's trust store",
  async check(ctx) {
    if (ctx.settings.extraCaCerts.length === 0)
      return { skip: "no extra CA certificates configured (DEVVM_EXTRA_CA_CERTS)" };
    // The certificates as check read them: apply writes those, not a second reading.
    const planned = resources(ctx);
    return { ...(await planResources(ctx, planned)), plan: planned };
  },
  async apply(ctx, { plan }) {
    const changes = await applyResources(ctx, plan);
    if (underRoot(ctx))
      ctx.log.info("update-ca-certificates skipped: it updates the machine's own store, not one under --root");
    else if (changes.length > 0) await run(ctx, "update-ca-certificates", []);
    return changes;
  },
} satisfies Stage<Resource[]>;
