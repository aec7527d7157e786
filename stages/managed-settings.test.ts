import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { assertNoSecrets } from "./managed-settings.ts";

const SOURCE = fileURLToPath(new URL("../files/claude-code/managed-settings.json", import.meta.url));
const json = readFileSync(SOURCE, "utf8");
const settings = JSON.parse(json) as { model: string; claudeMd: string };

// Each rule of docs/devvm.md stage 8, found by one phrase only that rule uses.
const RULES: [rule: string, phrase: RegExp][] = [
  ["a shared machine", /this machine is shared/i],
  ["act only as your own OS user", /act only as the OS user you run as/i],
  ["within your RBAC tier, naming the three", /RBAC tier[^\n]*admin, power-user or namespace-owner/],
  ["never another user's home", /never read, list or copy files under another user's home/i],
  ["never their credentials or tokens", /never look for or use their credentials or tokens/i],
  ["own secrets at 0600", /readable by you alone: mode 0600/],
  ["infrastructure through Terraform/Terragrunt", /infrastructure change is made in Terraform\/Terragrunt/i],
  ["CI applies on push to master", /CI applies it once it is pushed to master/],
  ["never kubectl apply/edit/patch", /no `kubectl apply`, `kubectl edit` or `kubectl patch`/],
  ["the agent does all git work", /do all git work yourself/i],
  ["never ask the user to, they may not know git", /never ask the user to run a git command; they may not know git/i],
  ["feature work in a worktree .worktrees/<topic>", /worktree at `\.worktrees\/<topic>`/],
  ["on branch <os-user>/<topic>, merged into master", /branch named `<os-user>\/<topic>`[^\n]*merge it into master/],
  ["trivial fixes straight to master", /trivial fix[^\n]*straight to master/i],
  ["commit on master, push to forgejo", /commit on master and push master to the `forgejo` remote/i],
  ["the commit message is the audit trail", /commit message is the audit trail/i],
  [
    "subject: what; body: why, in the user's terms",
    /subject line says what changed; the body says why, in the user's own terms/,
  ],
  ["no [ci skip] for non-admins", /never put `\[ci skip\]`[^\n]*unless you run as an admin/i],
  [
    "non-fast-forward: rebase on forgejo/master, push again",
    /non-fast-forward[^\n]*rebase your commits onto `forgejo\/master`, then push again/,
  ],
  [
    "branch protection: a branch <os-user>/<topic> and a pull request",
    /refused by branch protection: push the same commits to a branch `<os-user>\/<topic>`[^\n]*pull request/,
  ],
  ["through the Forgejo API, token from ~/.git-credentials", /Forgejo API[^\n]*token in your `~\/\.git-credentials`/],
  ["leave every clone on a clean master", /leave every clone on master with a clean working tree/i],
  ["tell the user plainly", /tell the user plainly/i],
  ["follow ~/.claude/rules/ and every CLAUDE.md", /follow the rules in `~\/\.claude\/rules\/` and every CLAUDE\.md/i],
  [
    "single layout: ~/code is the infra clone",
    /Single: `~\/code` is itself the infra clone \(`~\/code\/\.git` exists\)/,
  ],
  [
    "workspace layout: infra at ~/code/infra",
    /Workspace: `~\/code` holds several clones, the infra clone at `~\/code\/infra`/,
  ],
  [
    "ciphertext in a locked clone is expected",
    /locked: files encrypted with git-crypt stay ciphertext\. That is expected/,
  ],
  ["do not try to decrypt it", /do not try to decrypt/i],
  ["no secrets, ever", /no secrets, ever/i],
];

describe("the managed settings", () => {
  it("keep the org's model", () => {
    expect(settings.model).toBe("claude-fable-5");
  });

  it.each(RULES)("carry the rule: %s", (_rule, phrase) => {
    expect(settings.claudeMd).toMatch(phrase);
  });

  it("never force a model on the command line", () => {
    expect(json).not.toMatch(/--model/);
  });

  it("hold no secret", () => {
    expect(() => assertNoSecrets(json)).not.toThrow();
  });
});

/** assertNoSecrets's message, or "accepted". */
function refusalOf(json: string): string {
  try {
    assertNoSecrets(json);
    return "accepted";
  } catch (error) {
    return (error as Error).message;
  }
}

describe("assertNoSecrets", () => {
  const withValue = (value: unknown) => JSON.stringify({ ...settings, ...(value as object) });
  // Made up, shaped like the real thing.
  const TOKENS: [kind: string, value: string][] = [
    ["an Anthropic or OpenAI key", `sk-ant-oat01-${"Ab3".repeat(12)}`],
    ["a Vault token", `hvs.${"CAESIJ9x".repeat(4)}`],
    ["a GitHub token", `ghp_${"a1B2c3D4e5".repeat(4)}`],
    ["a long hex string", "3f1c9a7be2d04c5f8a6b1e2d3c4f5a6b7c8d9e0f"],
    ["a long base64 string", "dGhpcyBpcyBub3QgYSByZWFsIHNlY3JldCwganVzdCBhIHRlc3Q9PQ"],
  ];

  it.each(TOKENS)("refuses %s in the rules text, without showing it", (kind, token) => {
    const refusal = refusalOf(withValue({ claudeMd: `${settings.claudeMd}\n- Use ${token} for the API.` }));
    expect(refusal).toContain(`claudeMd holds what looks like ${kind}`);
    expect(refusal).not.toContain(token);
  });

  it("refuses a token anywhere in the JSON, nested or as a key", () => {
    expect(() => assertNoSecrets(withValue({ env: { FOREIGN: ["x", TOKENS[0]![1]] } }))).toThrow(
      "env.FOREIGN[1] holds",
    );
    expect(() => assertNoSecrets(withValue({ env: { [TOKENS[2]![1]]: "x" } }))).toThrow(
      /^files\/claude-code\/managed-settings\.json: a key in env holds what looks like a GitHub token$/,
    );
  });

  it("still refuses a key named like a secret, and a missing rules text", () => {
    expect(() => assertNoSecrets(withValue({ apiKey: "x" }))).toThrow("apiKey looks like a secret");
    expect(() => assertNoSecrets(JSON.stringify({ model: settings.model }))).toThrow('expected a string "claudeMd"');
  });

  it("lets ordinary long words, paths and ids through", () => {
    const text = withValue({
      claudeMd:
        "See /home/someone/code/infra/modules/networking/main.tf and the_quite_long_identifier_with_words_only_here, commit abc1234.",
    });
    expect(() => assertNoSecrets(text)).not.toThrow();
  });
});
