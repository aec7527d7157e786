import { describe, expect, it } from "vitest";
import { DISPATCH_ACCOUNT } from "../../stages/service-helpers.ts";
import { CODEX_GROUP } from "../../stages/vault-tokens.ts";
import { ADMIN_GROUPS, TIER_GROUPS } from "../users/roster-accounts.ts";
import { RESERVED_NAMES } from "./system-accounts.ts";

describe("names the roster may not give a person", () => {
  it("include every account and group the builder makes or gives", () => {
    for (const name of [DISPATCH_ACCOUNT, CODEX_GROUP, ...ADMIN_GROUPS, ...Object.values(TIER_GROUPS)])
      expect(RESERVED_NAMES).toContain(name);
  });

  it("include root and nobody", () => {
    expect(RESERVED_NAMES).toContain("root");
    expect(RESERVED_NAMES).toContain("nobody");
  });
});
