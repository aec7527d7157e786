import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Inputs } from "../lib/inputs/index.ts";
import { RosterFileSchema } from "../lib/inputs/roster.ts";
import type { Stage } from "../lib/core/stage.ts";
import { makeTestRoot } from "../test/support/test-context.ts";
import instancesStage from "./instances.ts";

const instances: Stage = instancesStage;
const hasSystemctl = spawnSync("systemctl", ["--version"]).status === 0;
const ROSTER = RosterFileSchema.parse({
  users: {
    wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
    alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
    bob: {
      authentik_user: "bkowalski",
      k8s_user: "bob-k",
      tier: "namespace-owner",
      namespaces: ["payments"],
      parked: true,
    },
  },
}).users;

function rootWithRoster() {
  const root = makeTestRoot();
  const lines: string[] = [];
  Object.assign(root.ctx, {
    inputs: { roster: ROSTER } as Inputs,
    log: { info: (m: string) => lines.push(m), debug: () => {} },
  });
  return Object.assign(root, { lines });
}

async function run(stage: Stage, ctx: Parameters<Stage["check"]>[0]) {
  const check = await stage.check(ctx);
  if ("skip" in check) throw new Error(check.skip);
  return check.changes.length === 0 ? [] : stage.apply(ctx, check);
}

const descriptions = (changes: { kind: string; description?: string }[]) =>
  changes.filter((c) => c.kind === "action").map((c) => c.description);

describe("instances under --root", () => {
  it("leaves the instances alone until the units stage has installed the template", async () => {
    using root = rootWithRoster();
    expect(await run(instances, root.ctx)).toEqual([]);
    expect(root.lines).toContain(
      "t3-serve@ instances left alone: /etc/systemd/system/t3-serve@.service is not installed yet (stage units)",
    );
  });

  it.skipIf(!hasSystemctl)(
    "enables the instances of active users offline, disables a parked one, starts nothing",
    async () => {
      using root = rootWithRoster();
      const unitDir = path.join(root.dir, "etc/systemd/system");
      mkdirSync(path.join(unitDir, "multi-user.target.wants"), { recursive: true });
      copyFileSync(
        path.join(root.ctx.repoDir, "files/service/units/t3-serve@.service"),
        path.join(unitDir, "t3-serve@.service"),
      );
      // bob was enabled before he was parked.
      spawnSync("ln", [
        "-s",
        "/etc/systemd/system/t3-serve@.service",
        path.join(unitDir, "multi-user.target.wants/t3-serve@bob.service"),
      ]);
      const applied = await run(instances, root.ctx);
      expect(descriptions(applied)).toEqual([
        "enable t3-serve@alice.service",
        "enable t3-serve@wizard.service",
        "disable t3-serve@bob.service (parked)",
      ]);
      expect(readlinkSync(path.join(unitDir, "multi-user.target.wants/t3-serve@alice.service"))).toBe(
        "/etc/systemd/system/t3-serve@.service",
      );
      expect(existsSync(path.join(unitDir, "multi-user.target.wants/t3-serve@bob.service"))).toBe(false);
      expect(root.lines).toContain(
        `t3-serve@ instances not started: the build manages ${root.dir} (--root), not a running system`,
      );
      expect(await instances.check(root.ctx)).toMatchObject({ changes: [] });
    },
  );
});
