import { describe, expect, it } from "vitest";
import { parseDeb822Sources, parseOneLineSources } from "./apt-sources.ts";

describe("apt sources", () => {
  it("reads one-line sources with options and comments, binary lines only", () => {
    const text = [
      "# deb http://old.example/debian buster main",
      "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://deb.example/debian bookworm main contrib",
      "deb-src http://deb.example/debian bookworm main",
      "deb http://security.example/debian-security bookworm-security main # the security suite",
    ].join("\n");
    expect(parseOneLineSources(text, "/etc/apt/sources.list")).toEqual([
      {
        uri: "http://deb.example/debian",
        suites: ["bookworm"],
        components: ["main", "contrib"],
        file: "/etc/apt/sources.list",
      },
      {
        uri: "http://security.example/debian-security",
        suites: ["bookworm-security"],
        components: ["main"],
        file: "/etc/apt/sources.list",
      },
    ]);
  });

  it("reads deb822 stanzas, leaving out disabled and source-only ones", () => {
    const text = [
      "Types: deb deb-src",
      "URIs: http://archive.example/ubuntu",
      "Suites: noble noble-updates",
      "Components: main universe",
      "",
      "Types: deb",
      "URIs: http://other.example/ubuntu",
      "Suites: noble-backports",
      "Enabled: no",
      "",
      "Types: deb-src",
      "URIs: http://src.example/ubuntu",
      "Suites: noble",
    ].join("\n");
    expect(parseDeb822Sources(text, "ubuntu.sources")).toEqual([
      {
        uri: "http://archive.example/ubuntu",
        suites: ["noble", "noble-updates"],
        components: ["main", "universe"],
        file: "ubuntu.sources",
      },
    ]);
  });
});
