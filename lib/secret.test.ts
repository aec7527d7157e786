import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { REDACTED, redactSecrets, Secret } from "./secret.ts";

describe("Secret", () => {
  const value = "sk-ant-oat01-hunter2hunter2";

  it("redacts itself in strings, JSON and inspect, and reveals on request", () => {
    const secret = new Secret(value);
    expect(`token=${secret}`).toBe(`token=${REDACTED}`);
    expect(String(secret)).toBe(REDACTED);
    expect(JSON.stringify({ token: secret })).toBe(`{"token":"${REDACTED}"}`);
    expect(inspect({ nested: { secret } }, { depth: 5 })).not.toContain("hunter2");
    expect(inspect(secret, { showHidden: true })).not.toContain("hunter2");
    expect(Object.keys(secret)).toEqual([]);
    expect(secret.reveal()).toBe(value);
  });

  it("scrubs values it has seen from other text", () => {
    const secret = new Secret("another-long-token-value");
    expect(redactSecrets(`body: {"t":"${secret.reveal()}"} and ${value}`)).toBe(`body: {"t":"${REDACTED}"} and ${REDACTED}`);
    expect(redactSecrets("nothing to hide")).toBe("nothing to hide");
  });

  it("compares without revealing", () => {
    expect(new Secret("abcdefgh").equals(new Secret("abcdefgh"))).toBe(true);
    expect(new Secret("abcdefgh").equals(new Secret("abcdefgX"))).toBe(false);
  });
});
