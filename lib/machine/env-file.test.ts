import { describe, expect, it } from "vitest";
import { envValue, setEnvValue, withoutEnvValue } from "./env-file.ts";

const LIVE = "# written by t3-provision-users\nT3_PORT=3774\nCLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-x\n\nEXTRA='a b'\n";

describe("env files", () => {
  it("reads the last assignment, unquoted", () => {
    expect(envValue(LIVE, "T3_PORT")).toBe("3774");
    expect(envValue(LIVE, "EXTRA")).toBe("a b");
    expect(envValue("T3_PORT=1\nexport T3_PORT = 2\n", "T3_PORT")).toBe("2");
    expect(envValue("T3_PORTS=1\n", "T3_PORT")).toBeUndefined();
  });

  it("changes only the key's own line and keeps every other byte", () => {
    expect(setEnvValue(LIVE, "T3_PORT", "3774")).toBe(LIVE);
    expect(setEnvValue(LIVE, "T3_PORT", "3790")).toBe(LIVE.replace("T3_PORT=3774", "T3_PORT=3790"));
    expect(setEnvValue("A=1\r\nT3_PORT=9\r\n", "T3_PORT", "3773")).toBe("A=1\r\nT3_PORT=3773\r\n");
  });

  it("appends the key when it is missing, on a line of its own", () => {
    expect(setEnvValue("", "T3_PORT", "3773")).toBe("T3_PORT=3773\n");
    expect(setEnvValue("TOKEN=x", "T3_PORT", "3773")).toBe("TOKEN=x\nT3_PORT=3773\n");
    expect(setEnvValue("TOKEN=x\n", "T3_PORT", "3773")).toBe("TOKEN=x\nT3_PORT=3773\n");
  });

  it("drops only the assignments of the key that carry the given value, every other line kept", () => {
    const text = "T3_PORT=3773\n# note\nCLAUDE_CODE_OAUTH_TOKEN=shared\nEXTRA=1\n";
    expect(withoutEnvValue(text, "CLAUDE_CODE_OAUTH_TOKEN", "shared")).toBe("T3_PORT=3773\n# note\nEXTRA=1\n");
    expect(withoutEnvValue('export CLAUDE_CODE_OAUTH_TOKEN="shared"\n', "CLAUDE_CODE_OAUTH_TOKEN", "shared")).toBe("");
    const own = "T3_PORT=3773\nCLAUDE_CODE_OAUTH_TOKEN=mine\n";
    expect(withoutEnvValue(own, "CLAUDE_CODE_OAUTH_TOKEN", "shared")).toBe(own);
    expect(withoutEnvValue("A=shared\n", "CLAUDE_CODE_OAUTH_TOKEN", "shared")).toBe("A=shared\n");
  });
});
