import { describe, expect, it } from "vitest";
import { mergeCgroupParent } from "./docker-daemon-json.ts";

describe("merging cgroup-parent into daemon.json", () => {
  it("writes the one key when there is no file, or an empty one", () => {
    const want = { content: '{\n  "cgroup-parent": "docker.slice"\n}\n' };
    expect(mergeCgroupParent(undefined)).toEqual(want);
    expect(mergeCgroupParent("\n")).toEqual(want);
  });

  it("keeps every other key, in its place, and replaces another parent", () => {
    const merged = mergeCgroupParent(
      '{"log-driver": "journald", "cgroup-parent": "/docker", "registry-mirrors": ["https://m.example"]}',
    );
    expect("content" in merged && JSON.parse(merged.content)).toEqual({
      "log-driver": "journald",
      "cgroup-parent": "docker.slice",
      "registry-mirrors": ["https://m.example"],
    });
    expect("content" in merged && Object.keys(JSON.parse(merged.content) as object)).toEqual([
      "log-driver",
      "cgroup-parent",
      "registry-mirrors",
    ]);
  });

  it("leaves a file that already has it byte for byte, however it is laid out", () => {
    const text = '{ "cgroup-parent": "docker.slice", "debug": true }';
    expect(mergeCgroupParent(text)).toEqual({ content: text });
  });

  it("names what is wrong with a file it cannot read as a JSON object, and changes nothing", () => {
    expect(mergeCgroupParent('{"debug": true,}')).toEqual({
      problem: expect.stringMatching(/^it is not valid JSON \(.+\)$/),
    });
    expect(mergeCgroupParent('["docker.slice"]')).toEqual({ problem: "it holds an array, not a JSON object" });
    expect(mergeCgroupParent("null")).toEqual({ problem: "it holds null, not a JSON object" });
    expect(mergeCgroupParent("42")).toEqual({ problem: "it holds 42, not a JSON object" });
  });
});
