// `build.ts image --release KEY`: which release an image is of.
import { describe, expect, it } from "vitest";
import { parseCli } from "./args.ts";

describe("--release", () => {
  it("names the image's release; Debian 13 when not given", () => {
    expect(parseCli(["image"]).release).toBe("debian-13");
    expect(parseCli(["image", "--release", "ubuntu-24.04"]).release).toBe("ubuntu-24.04");
    expect(parseCli(["image", "--release=debian-12"]).release).toBe("debian-12");
    expect(parseCli([]).release).toBeUndefined();
  });

  it("refuses a release that is not supported, naming those that are", () => {
    expect(() => parseCli(["image", "--release", "debian-11"])).toThrow(
      expect.objectContaining({
        message: 'unknown release "debian-11"',
        hint: "the releases are debian-13, ubuntu-24.04, debian-12: build.ts image --release KEY",
      }),
    );
    expect(() => parseCli(["image", "--release", "bookworm"])).toThrow('unknown release "bookworm"');
  });

  it("goes with the image command only", () => {
    expect(() => parseCli(["--release", "debian-13"])).toThrow("--release goes with the image command");
    expect(() => parseCli(["lock", "--release", "debian-13"])).toThrow("--release goes with the image command");
  });
});
