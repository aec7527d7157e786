import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseLocated } from "./located.ts";
import { RosterSchema } from "./roster.ts";

const parse = (text: string) => parseLocated(text, "roster.yaml", RosterSchema);

const GOOD = `wizard:
  authentik_user: merlin
  k8s_user: wiz
  tier: admin
bob:
  authentik_user: bkowalski
  k8s_user: bob-k
  tier: namespace-owner
  namespaces: [payments]
`;

describe("roster.yaml", () => {
  it("accepts a good roster and fills defaults", () => {
    const { data, problems } = parse(GOOD);
    expect(problems).toEqual([]);
    expect(data?.wizard).toMatchObject({ tier: "admin", code_layout: "single", parked: false, namespaces: [] });
    expect(data?.bob?.namespaces).toEqual(["payments"]);
  });

  it("accepts the real roster.yaml", () => {
    expect(parse(readFileSync(new URL("../../roster.yaml", import.meta.url), "utf8")).problems).toEqual([]);
  });

  it("reports three different mistakes at once, each with its line", () => {
    const text = `wizard:
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
`;
    const { problems } = parse(text);
    expect(problems).toEqual([
      { file: "roster.yaml", line: 4, message: expect.stringContaining("expected a tier") },
      { file: "roster.yaml", line: 8, message: expect.stringContaining("needs a non-empty namespaces") },
      { file: "roster.yaml", line: 13, message: expect.stringMatching(/carol\.shell: unknown key; expected one of: authentik_user, .*parked/) },
    ]);
  });

  it("refuses repos without the workspace layout", () => {
    const { problems } = parse(`alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n  repos: [x]\n`);
    expect(problems).toEqual([{ file: "roster.yaml", line: 5, message: expect.stringContaining("code_layout: workspace") }]);
  });

  it("refuses an invalid OS user name", () => {
    const { problems } = parse(`Alice:\n  authentik_user: a\n  k8s_user: b\n  tier: power-user\n`);
    expect(problems).toEqual([{ file: "roster.yaml", line: 1, message: expect.stringContaining("not a valid OS user name") }]);
  });

  it("refuses two users with the same authentik_user", () => {
    const { problems } = parse(`${GOOD}carol:\n  authentik_user: merlin\n  k8s_user: c\n  tier: power-user\n`);
    expect(problems).toEqual([{ file: "roster.yaml", line: 11, message: expect.stringContaining("already wizard's") }]);
  });

  it("reports YAML syntax errors and duplicate keys with their lines", () => {
    const { problems } = parse(`wizard:\n  tier: admin\n  tier: admin\n`);
    expect(problems[0]).toMatchObject({ file: "roster.yaml", line: 3 });
    expect(parse(`wizard: [unclosed\n`).problems[0]?.line).toBeGreaterThanOrEqual(1);
  });
});
