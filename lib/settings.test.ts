import { describe, expect, it } from "vitest";
import { dispatchSource, readSettings } from "./settings.ts";

describe("the t3-dispatch source", () => {
  it("defaults to scripts/t3-dispatch of the admin's infra clone, in either layout", () => {
    const settings = readSettings({});
    expect(dispatchSource(settings, () => false)).toBe("/home/wizard/code/scripts/t3-dispatch");
    expect(dispatchSource(settings, (p) => p === "/home/wizard/code/infra/.git")).toBe("/home/wizard/code/infra/scripts/t3-dispatch");
    expect(dispatchSource(readSettings({ DEVVM_ADMIN_CODE_DIR: "/srv/admin/code" }), () => false)).toBe("/srv/admin/code/scripts/t3-dispatch");
  });

  it("is the setting when one is given", () => {
    expect(dispatchSource(readSettings({ DEVVM_T3_DISPATCH_SOURCE: "/src/t3-dispatch" }), () => true)).toBe("/src/t3-dispatch");
  });
});
