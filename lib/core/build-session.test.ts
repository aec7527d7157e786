import { describe, expect, it } from "vitest";
import { BuildSession, SessionSlot } from "./build-session.ts";

describe("BuildSession", () => {
  it("makes a slot's part on its first use, keeps it for the session, and gives another session its own", () => {
    let made = 0;
    const SEEN = new SessionSlot(() => ({ files: new Set<string>(), made: ++made }));
    const first = new BuildSession();
    first.get(SEEN).files.add("/cache/sha256/ab");
    expect(first.get(SEEN).files.has("/cache/sha256/ab")).toBe(true);
    const second = new BuildSession();
    expect(second.get(SEEN).files.size).toBe(0);
    expect([first.get(SEEN).made, second.get(SEEN).made]).toEqual([1, 2]);
  });
});
