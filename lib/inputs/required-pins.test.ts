import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { stages } from "../../stages/index.ts";
import { readSettings } from "./settings.ts";
import type { Inputs } from "./index.ts";
import type { Pins } from "./pins.ts";
import { IncompletePinsError, missingPins, requireCompletePins } from "./required-pins.ts";

const COMMITTED = JSON.parse(readFileSync(new URL("../../pins.json", import.meta.url), "utf8")) as Pins;
const ALL = stages;
const named = (...names: string[]) => names.map((name) => stages.find((s) => s.name === name)!);
const HOURLY = named("preflight", "users", "offboarding", "logins", "instances", "workspaces");
const npmSource = readSettings({});
const onMachine = { underRoot: false };

/** Complete pins (every hash there), changed by `edit`. */
function inputs(edit: (pins: Pins) => void = () => {}, packages = [{ name: "git", line: 3 }]): Inputs {
  const pins = structuredClone(COMMITTED);
  pins.apt = { "debian-12": { git: "1:2.39.5-0+deb12u3" } };
  pins.node.sha256 = "0".repeat(64);
  pins.npm.t3.integrity = pins.npm["@openai/codex"].integrity;
  pins.kubelogin = { ...pins.kubelogin, sha256: "1".repeat(64), binarySha256: "2".repeat(64) };
  pins.kubectl = { ...pins.kubectl, sha256: "3".repeat(64) };
  edit(pins);
  return { packages, pins, roster: {}, hashes: {} } as unknown as Inputs;
}

describe("the pins the selected stages need", () => {
  it("finds none missing in a complete lock, for every stage", () => {
    expect(missingPins(ALL, inputs(), npmSource, onMachine)).toEqual([]);
  });

  it("lists every missing hash of a full build at once, in pipeline order", () => {
    const holes = inputs((pins) => {
      delete pins.node.npm.integrity;
      delete pins.npm.t3.integrity;
      delete pins.kubelogin.binarySha256;
      delete pins.kubectl.sha256;
    });
    expect(missingPins(ALL, holes, npmSource, onMachine).map((m) => `${m.stage}: ${m.key}`)).toEqual([
      "node: node.npm.integrity",
      "t3: npm.t3.integrity",
      "kubelogin: kubelogin.binarySha256",
      "kubectl: kubectl.sha256",
    ]);
  });

  it("asks only what the selected stages use: the hourly reconcile needs no hash", () => {
    const holes = inputs((pins) => {
      delete pins.kubectl.sha256;
      delete pins.npm.t3.integrity;
    });
    expect(missingPins(HOURLY, holes, npmSource, onMachine)).toEqual([]);
    expect(missingPins(named("preflight", "t3"), holes, npmSource, onMachine).map((m) => m.key)).toEqual([
      "npm.t3.integrity",
    ]);
  });

  it("asks Node's sha256 for the official tarball, its integrity for the registry's package", () => {
    const official = readSettings({ DEVVM_NODE_SOURCE: "official", DEVVM_NODE_DIST_URL: "https://nodejs.org/dist" });
    const noSha = inputs((pins) => delete pins.node.sha256);
    const noIntegrity = inputs((pins) => delete pins.node.integrity);
    expect(missingPins(named("node"), noSha, official, onMachine)).toEqual([
      { key: "node.sha256", stage: "node", note: "DEVVM_NODE_SOURCE=official" },
    ]);
    expect(missingPins(named("node"), noSha, npmSource, onMachine)).toEqual([]);
    expect(missingPins(named("node"), noIntegrity, npmSource, onMachine)).toEqual([
      { key: "node.integrity", stage: "node" },
    ]);
  });

  it("under --root, leaves out the stages that skip themselves there (the npm CLIs)", () => {
    const holes = inputs((pins) => {
      delete pins.npm.t3.integrity;
      delete pins.kubectl.sha256;
    });
    expect(missingPins(ALL, holes, npmSource, { underRoot: true }).map((m) => m.key)).toEqual(["kubectl.sha256"]);
  });

  it("reads what a stage declares: key paths (a name may hold dots), or a function of the settings and --root", () => {
    const holes = inputs((pins) => {
      (pins.npm as Record<string, unknown>)["lodash.merge"] = { version: "4.6.2", integrity: "sha512-x" };
    });
    const declared = [
      { name: "paths", pins: ["npm.lodash.merge.integrity", "npm.lodash.merge.sha1", "nowhere.sha256"] },
      { name: "function", pins: (where: { underRoot: boolean }) => (where.underRoot ? [] : ["kubectl.sha512"]) },
    ];
    expect(missingPins(declared, holes, npmSource, onMachine).map((m) => `${m.stage}: ${m.key}`)).toEqual([
      "paths: npm.lodash.merge.sha1",
      "paths: nowhere.sha256",
      "function: kubectl.sha512",
    ]);
    expect(missingPins(declared, holes, npmSource, { underRoot: true }).map((m) => m.key)).toEqual([
      "npm.lodash.merge.sha1",
      "nowhere.sha256",
    ]);
  });

  it("says each gap as file and key, with the command that fills them", () => {
    const holes = inputs((pins) => {
      delete pins.kubelogin.sha256;
      delete pins.kubectl.sha256;
    });
    let error: unknown;
    try {
      requireCompletePins(ALL, holes, npmSource, onMachine);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(IncompletePinsError);
    expect((error as IncompletePinsError).message).toBe(
      [
        "pins.json lacks 2 values the selected stages need; nothing was changed:",
        "  pins.json: kubelogin.sha256 is missing (stage kubelogin)",
        "  pins.json: kubectl.sha256 is missing (stage kubectl)",
      ].join("\n"),
    );
    expect((error as IncompletePinsError).hint).toMatch(
      /^run `\.\/bootstrap\.sh lock` \(or `npx tsx build\.ts lock` where Node and node_modules are\) where the sources are reachable.*--skip kubelogin,kubectl$/,
    );
    expect(() => requireCompletePins(ALL, inputs(), npmSource, onMachine)).not.toThrow();
  });
});
