// Each release's base: its recipe, and the apt sources a fresh VM of it has.
import { describe, expect, it } from "vitest";
import { readSettings } from "../inputs/settings.ts";
import { RELEASES, releaseByKey, type Release } from "../machine/releases.ts";
import { baseMirrors, releaseBase, renderAptSources, UBUNTU_ARCHIVES } from "./release-base.ts";
import { UBUNTU_KEYRING } from "./ubuntu-keyring.ts";

const release = (key: string): Release => releaseByKey(key)!;
const DEBIAN = { archive: "http://deb.debian.org/debian", security: "http://deb.debian.org/debian-security" };

describe("a release's base", () => {
  it("has a recipe for every release, naming the release and its archive", () => {
    for (const r of RELEASES)
      expect(releaseBase(r)).toMatchObject({
        release: r.key,
        codename: r.codename,
        variant: "minbase",
        archive: r.archive,
      });
  });

  it("is made by debootstrap for Debian, by mmdebstrap with the recorded Ubuntu keyring and apt for Ubuntu", () => {
    expect(releaseBase(release("debian-13"))).toMatchObject({
      tool: "debootstrap",
      include: ["systemd", "systemd-sysv"],
    });
    expect(releaseBase(release("debian-13")).keyring).toBeUndefined();
    expect(releaseBase(release("ubuntu-24.04"))).toMatchObject({
      tool: "mmdebstrap",
      include: ["apt", "systemd", "systemd-sysv"],
      keyring: UBUNTU_KEYRING,
    });
  });

  it("writes Debian 13's sources as deb822, signed by trixie's keyring", () => {
    const base = releaseBase(release("debian-13"));
    expect(base.aptSources.path).toBe("/etc/apt/sources.list.d/debian.sources");
    expect(renderAptSources(base, DEBIAN)).toBe(
      [
        "Types: deb",
        "URIs: http://deb.debian.org/debian",
        "Suites: trixie trixie-updates",
        "Components: main",
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp",
        "",
        "Types: deb",
        "URIs: http://deb.debian.org/debian-security",
        "Suites: trixie-security",
        "Components: main",
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp",
        "",
      ].join("\n"),
    );
  });

  it("writes Ubuntu 24.04's sources as deb822 with main and universe, signed by Ubuntu's keyring", () => {
    const base = releaseBase(release("ubuntu-24.04"));
    expect(base.aptSources.path).toBe("/etc/apt/sources.list.d/ubuntu.sources");
    expect(renderAptSources(base, UBUNTU_ARCHIVES)).toBe(
      [
        "Types: deb",
        "URIs: http://archive.ubuntu.com/ubuntu",
        "Suites: noble noble-updates",
        "Components: main universe",
        "Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg",
        "",
        "Types: deb",
        "URIs: http://security.ubuntu.com/ubuntu",
        "Suites: noble-security",
        "Components: main universe",
        "Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg",
        "",
      ].join("\n"),
    );
  });

  it("keeps Debian 12's one-line sources.list as it was", () => {
    const base = releaseBase(release("debian-12"));
    expect(base.aptSources.path).toBe("/etc/apt/sources.list");
    expect(renderAptSources(base, DEBIAN)).toBe(
      "deb http://deb.debian.org/debian bookworm main\n" +
        "deb http://deb.debian.org/debian bookworm-updates main\n" +
        "deb http://deb.debian.org/debian-security bookworm-security main\n",
    );
  });

  it("takes Ubuntu's archives from the settings, else Ubuntu's own", async () => {
    const noble = release("ubuntu-24.04");
    expect(await baseMirrors(noble, readSettings({}))).toEqual(UBUNTU_ARCHIVES);
    const settings = readSettings({
      DEVVM_UBUNTU_MIRROR: "http://mirror.example.org/ubuntu/",
      DEVVM_UBUNTU_SECURITY_MIRROR: "http://mirror.example.org/ubuntu-security",
    });
    expect(await baseMirrors(noble, settings)).toEqual({
      archive: "http://mirror.example.org/ubuntu",
      security: "http://mirror.example.org/ubuntu-security",
    });
  });
});
