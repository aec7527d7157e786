import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseLocated } from "./located.ts";
import { PinsSchema, snapshotDate, snapshotTimeOf } from "./pins.ts";

const real = readFileSync(new URL("../../pins.json", import.meta.url), "utf8");
const parse = (text: string) => parseLocated(text, "pins.json", PinsSchema);

/** The real pins.json with one value replaced, keeping its layout (and so its lines). */
function withValue(pattern: RegExp, replacement: string): string {
  const text = real.replace(pattern, replacement);
  expect(text).not.toBe(real);
  return text;
}

describe("pins.json", () => {
  it("accepts the real lock", () => {
    expect(parse(real).problems).toEqual([]);
  });

  it.each([
    ["latest", "floating tag"],
    ["nightly", "floating tag"],
    ["^2.1.0", "a range"],
    ["~2.1.0", "a range"],
    ["2.x", "a range"],
  ])("refuses claude-code version %s", (version, why) => {
    const text = withValue(/("@anthropic-ai\/claude-code": \{\s*"version": )"[^"]+"/, `$1"${version}"`);
    const { problems } = parse(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: "pins.json", message: expect.stringContaining(why) });
    expect(problems[0]!.line).toBe(text.split("\n").findIndex((l) => l.includes(`"${version}"`)) + 1);
  });

  it("holds t3 at exactly 0.0.26", () => {
    const { problems } = parse(withValue(/("t3": \{\s*"version": )"0.0.26"/, '$1"0.0.25"'));
    expect(problems).toEqual([expect.objectContaining({ message: expect.stringContaining("exactly 0.0.26") })]);
    const approved = withValue(/("t3": \{\s*"version": )"0.0.26"/, `$1"0.0.27", "approved": "tested on staging"`);
    expect(parse(approved).problems).toEqual([]);
  });

  it("holds kubelogin at v1.36.2", () => {
    const { problems } = parse(withValue(/"v1.36.2"/, '"v1.37.0"'));
    expect(problems[0]?.message).toContain("v1.36.2");
  });

  it.each(["stable", "latest", "1.36.4", "v1.36", "v1.36.4-rc.0", "v1.36.x"])(
    "refuses kubectl version %s",
    (version) => {
      const { problems } = parse(withValue(/("kubectl": \{\s*"version": )"[^"]+"/, `$1"${version}"`));
      expect(problems).toEqual([
        expect.objectContaining({ message: expect.stringContaining("exact Kubernetes release such as v1.36.4") }),
      ]);
    },
  );

  it("takes kubectl's sha256 when there is one, and only a sha256", () => {
    expect(
      parse(withValue(/("kubectl": \{\s*"version": "[^"]+")/, `$1, "sha256": "${"a".repeat(64)}"`)).problems,
    ).toEqual([]);
    expect(
      parse(withValue(/("kubectl": \{\s*"version": "[^"]+")/, '$1, "sha256": "ABC"')).problems[0]?.message,
    ).toContain("64 lower-case hex digits");
  });

  it("wants Node 22.16 or newer, within 22", () => {
    expect(parse(withValue(/"version": "22\.\d+\.\d+"/, '"version": "20.11.0"')).problems[0]?.message).toContain(
      "22.x",
    );
  });

  it("wants a sha256 of 64 hex digits", () => {
    const { problems } = parse(
      withValue(/"asset": "kubelogin_linux_amd64.zip"/, '"asset": "kubelogin_linux_amd64.zip", "sha256": "abc"'),
    );
    expect(problems[0]?.message).toContain("64 lower-case hex digits");
  });

  it("refuses unknown keys, unknown releases and non-Debian apt versions", () => {
    const text = withValue(/"apt": \{/, '"extra": 1, "apt": { "debian-11": {},').replace(
      /"git": "[^"]*"/,
      '"git": "*"',
    );
    const { problems } = parse(text);
    expect(problems.map((p) => p.message).sort()).toEqual([
      "apt.debian-11: unknown key; expected one of: debian-13, ubuntu-24.04, debian-12",
      expect.stringMatching(/^apt\.debian-13\.git: "\*" is not an exact Debian version/),
      expect.stringContaining("extra: unknown key"),
    ]);
  });
});

describe("pins.json's snapshot times", () => {
  // The real lock's block, with its first release replaced, keeping the layout (and so its lines).
  const withSnapshot = (value: string, key = "debian-13") =>
    withValue(/("aptSnapshot": \{\n {4})"debian-13": "[^"]*"/, `$1"${key}": "${value}"`);

  it("takes a time in UTC as the snapshot archives name them, per supported release", () => {
    expect(parse(withSnapshot("20261203T101500Z")).problems).toEqual([]);
    expect(snapshotDate("20261203T101500Z")?.toISOString()).toBe("2026-12-03T10:15:00.000Z");
    expect(snapshotTimeOf(new Date("2026-12-03T10:15:00.999Z"))).toBe("20261203T101500Z");
  });

  it.each(["2026-12-03T10:15:00Z", "20261203T101500", "20261131T101500Z", "20261203T241500Z", "latest"])(
    "refuses %s, naming the line",
    (value) => {
      const text = withSnapshot(value);
      const { problems } = parse(text);
      expect(problems).toHaveLength(1);
      expect(problems[0]!.message).toMatch(/expected a snapshot time in UTC such as 20261203T101500Z/);
      expect(problems[0]!.line).toBe(text.split("\n").findIndex((l) => l.includes(`"${value}"`)) + 1);
    },
  );

  it("refuses a release it does not know", () => {
    expect(parse(withSnapshot("20261203T101500Z", "debian-11")).problems[0]!.message).toMatch(
      /^aptSnapshot\.debian-11: unknown key; expected one of: debian-13, ubuntu-24\.04, debian-12$/,
    );
  });
});
