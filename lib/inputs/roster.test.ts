import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseLocated } from "./located.ts";
import { RosterFileSchema } from "./roster.ts";

const parse = (text: string) => parseLocated(text, "roster.yaml", RosterFileSchema);
/** The live format: every user under a top-level users: map. */
const roster = (users: string) => `users:\n${users.replace(/^/gm, "  ").trimEnd()}\n`;

const GOOD = roster(`wizard:
  authentik_user: merlin
  k8s_user: wiz
  tier: admin
bob:
  authentik_user: bkowalski
  k8s_user: bob-k
  tier: namespace-owner
  namespaces: [payments]
`);

describe("roster.yaml", () => {
  it("accepts a good roster and fills defaults", () => {
    const { data, problems } = parse(GOOD);
    expect(problems).toEqual([]);
    expect(data?.users.wizard).toMatchObject({
      tier: "admin",
      code_layout: "single",
      parked: false,
      claude_auth: true,
    });
    expect(data?.users.bob?.namespaces).toEqual(["payments"]);
  });

  it("accepts the real roster.yaml", () => {
    expect(parse(readFileSync(new URL("../../roster.yaml", import.meta.url), "utf8")).problems).toEqual([]);
  });

  it("refuses the old format without users:, naming what it expected", () => {
    const { problems } = parse(`wizard:\n  authentik_user: merlin\n  k8s_user: wiz\n  tier: admin\n`);
    expect(problems).toEqual([
      { file: "roster.yaml", line: 1, message: "users: expected a map of OS user names to users" },
      { file: "roster.yaml", line: 1, message: "wizard: unknown key; expected one of: users" },
    ]);
    expect(parse("").problems).toEqual([
      { file: "roster.yaml", line: 1, message: expect.stringContaining("expected a top-level users: map") },
    ]);
  });

  it("reports three different mistakes at once, each with its line", () => {
    const text = roster(`wizard:
  authentik_user: merlin
  k8s_user: wiz
  tier: wizard
bob:
  authentik_user: bkowalski
  k8s_user: bob-k
  tier: namespace-owner
carol:
  authentik_user: carol
  k8s_user: carol
  tier: power-user
  shell: zsh
`);
    const { problems } = parse(text);
    expect(problems).toEqual([
      { file: "roster.yaml", line: 5, message: expect.stringContaining("expected a tier") },
      { file: "roster.yaml", line: 9, message: expect.stringContaining("needs a non-empty namespaces") },
      {
        file: "roster.yaml",
        line: 14,
        message: expect.stringMatching(/users\.carol\.shell: unknown key; expected one of: authentik_user, .*parked/),
      },
    ]);
  });

  it("takes claude_auth and parked as booleans only, naming the line", () => {
    const { data } = parse(
      roster(`alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n  claude_auth: false\n`),
    );
    expect(data?.users.alice).toMatchObject({ claude_auth: false, parked: false });
    const { problems } = parse(
      roster(`alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n  claude_auth: "no"\n  parked: 1\n`),
    );
    expect(problems).toEqual([
      { file: "roster.yaml", line: 7, message: "users.alice.parked: expected parked: true or false" },
      { file: "roster.yaml", line: 6, message: "users.alice.claude_auth: expected claude_auth: true or false" },
    ]);
  });

  it("refuses namespaces for a tier other than namespace-owner", () => {
    const { problems } = parse(
      roster(`alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n  namespaces: [payments]\n`),
    );
    expect(problems).toEqual([
      {
        file: "roster.yaml",
        line: 6,
        message:
          "users.alice.namespaces: namespaces are only for tier namespace-owner, not power-user; remove them or change the tier",
      },
    ]);
  });

  it("refuses a repo name that is not a plain folder name, and infra", () => {
    const { problems } = parse(
      roster(
        `alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n  code_layout: workspace\n  repos:\n    - ok.repo_1\n    - ../etc\n    - infra\n`,
      ),
    );
    expect(problems).toEqual([
      { file: "roster.yaml", line: 9, message: expect.stringMatching(/^users\.alice\.repos\.1: expected a repo name/) },
      {
        file: "roster.yaml",
        line: 10,
        message: "users.alice.repos.2: infra is always cloned at ~/code/infra; remove it from repos",
      },
    ]);
  });

  it("refuses repos without the workspace layout", () => {
    const { problems } = parse(
      roster(`alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n  repos: [x]\n`),
    );
    expect(problems).toEqual([
      { file: "roster.yaml", line: 6, message: expect.stringContaining("code_layout: workspace") },
    ]);
  });

  it("refuses an invalid OS user name", () => {
    const { problems } = parse(roster(`Alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n`));
    expect(problems).toEqual([
      { file: "roster.yaml", line: 2, message: expect.stringContaining("not a valid OS user name") },
    ]);
  });

  it("refuses two users with the same authentik_user", () => {
    const { problems } = parse(`${GOOD}  carol:\n    authentik_user: merlin\n    k8s_user: c\n    tier: power-user\n`);
    expect(problems).toEqual([{ file: "roster.yaml", line: 12, message: expect.stringContaining("already wizard's") }]);
  });

  it("reports YAML syntax errors and duplicate keys with their lines", () => {
    const { problems } = parse(roster(`wizard:\n  tier: admin\n  tier: admin\n`));
    expect(problems[0]).toMatchObject({ file: "roster.yaml", line: 4 });
    expect(parse(`users:\n  wizard: [unclosed\n`).problems[0]?.line).toBeGreaterThanOrEqual(1);
  });
});
