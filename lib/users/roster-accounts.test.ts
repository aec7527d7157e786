// Names that JavaScript objects treat specially are ordinary names in the
// files the users stage writes: from roster.yaml's text to dispatch.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseLocated } from "../inputs/located.ts";
import { RosterFileSchema, type Roster } from "../inputs/roster.ts";
import { allocatePorts, dispatchContent, readEnvFiles, ttydMapContent } from "./roster-accounts.ts";

const SPECIAL = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "isPrototypeOf"];

function rosterOf(text: string): Roster {
  const { data, problems } = parseLocated(text, "roster.yaml", RosterFileSchema);
  expect(problems).toEqual([]);
  return data!.users;
}

describe("special names in the users stage's files", () => {
  it("keeps every authentik_user in dispatch.json and the ttyd map, __proto__ included", () => {
    const users = SPECIAL.map(
      (authentik, i) =>
        `  user${i}:\n    authentik_user: ${authentik}\n    k8s_user: ${authentik}\n    tier: power-user\n`,
    );
    const roster = rosterOf(`users:\n${users.join("")}`);
    const ports = allocatePorts({}, Object.keys(roster));
    const dispatch = JSON.parse(dispatchContent(roster, ports)) as Record<string, { os_user: string; port: number }>;
    // Parsed back with JSON.parse, "__proto__" is an own key again.
    expect(Object.keys(dispatch)).toEqual([...SPECIAL].sort());
    expect(dispatch.__proto__).toEqual({ os_user: "user0", port: 3773 });
    expect(dispatchContent(roster, ports)).toContain('"__proto__":{"os_user":"user0","port":3773}');
    expect(
      ttydMapContent(roster, ports)
        .split("\n")
        .filter((l) => l && !l.startsWith("#")),
    ).toEqual(SPECIAL.map((a, i) => `${a}=user${i}`));
  });

  it("gives a port to a user named like an Object property, and keeps one found in an env file", () => {
    const kept = Object.assign(Object.create(null) as Record<string, number>, {
      ["__proto__"]: 3773,
      constructor: 3774,
    });
    const ports = allocatePorts(kept, ["alice", "constructor"]);
    expect(Object.entries(ports)).toEqual([
      ["__proto__", 3773],
      ["constructor", 3774],
      ["alice", 3775],
    ]);
    expect(Object.entries(allocatePorts({}, ["constructor", "alice"]))).toEqual([
      ["alice", 3773],
      ["constructor", 3774],
    ]);
  });

  it("reads the port of an env file named __proto__.env or constructor.env as that user's", () => {
    const root = mkdtempSync(path.join(tmpdir(), "devvm-env-"));
    try {
      mkdirSync(path.join(root, "etc/t3-serve"), { recursive: true });
      writeFileSync(path.join(root, "etc/t3-serve/__proto__.env"), "T3_PORT=3773\n");
      writeFileSync(path.join(root, "etc/t3-serve/constructor.env"), "T3_PORT=3774\n");
      const { ports } = readEnvFiles({ root });
      expect(Object.entries(ports)).toEqual([
        ["__proto__", 3773],
        ["constructor", 3774],
      ]);
      // Their ports stay taken.
      expect(allocatePorts(ports, ["alice"]).alice).toBe(3775);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
