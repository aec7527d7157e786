import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  addPendingRestarts,
  offlineReason,
  readPendingRestarts,
  verifyUnits,
  writePendingRestarts,
} from "./systemd.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";

const hasSystemd = spawnSync("systemd-analyze", ["--version"]).status === 0;

describe("pending restarts", () => {
  it("accumulates units without duplicates and removes the record when emptied", async () => {
    using root = makeTestRoot();
    expect(await readPendingRestarts(root.ctx)).toEqual([]);
    await addPendingRestarts(root.ctx, ["t3-dispatch.service"]);
    await addPendingRestarts(root.ctx, ["devvm-t3-pin.timer", "t3-dispatch.service"]);
    const file = path.join(root.dir, "var/lib/devvm/pending-restarts.json");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(["devvm-t3-pin.timer", "t3-dispatch.service"]);
    await writePendingRestarts(root.ctx, []);
    expect(existsSync(file)).toBe(false);
  });

  it("reads a damaged record as empty", async () => {
    using root = makeTestRoot();
    mkdirSync(path.join(root.dir, "var/lib/devvm"), { recursive: true });
    writeFileSync(path.join(root.dir, "var/lib/devvm/pending-restarts.json"), "{not json");
    expect(await readPendingRestarts(root.ctx)).toEqual([]);
  });
});

describe("systemd", () => {
  it("starts nothing under --root", () => {
    using root = makeTestRoot();
    expect(offlineReason(root.ctx)).toMatch(/--root/);
  });

  it.skipIf(!hasSystemd)("refuses units that verify warns about, naming them by their real names", async () => {
    using root = makeTestRoot();
    const service = { name: "demo.service", content: "[Service]\nExecStart=/bin/true\nRestartSec=often\n" };
    await expect(verifyUnits(root.ctx, [service])).rejects.toThrow(
      /refused the units; none was installed:\ndemo\.service:3: Failed to parse sec value, ignoring: often/,
    );
    await expect(
      verifyUnits(root.ctx, [{ name: "demo.service", content: "[Service]\nExecStart=/bin/true\n" }]),
    ).resolves.toBeUndefined();
  });
});
