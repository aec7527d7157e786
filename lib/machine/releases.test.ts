import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UserError } from "../core/errors.ts";
import { machineRelease, parseOsRelease, RELEASES } from "./releases.ts";

const roots: string[] = [];
function rootWith(osRelease: string): string {
  const root = mkdtempSync(path.join(tmpdir(), "devvm-release-"));
  roots.push(root);
  mkdirSync(path.join(root, "etc"));
  writeFileSync(path.join(root, "etc/os-release"), osRelease);
  return root;
}
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

describe("releases", () => {
  it("knows each release by its os-release, as the distributions write it", () => {
    const trixie =
      'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nVERSION_CODENAME=trixie\nID=debian\n';
    const noble =
      'PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n';
    const bookworm = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n';
    expect(machineRelease(rootWith(trixie)).key).toBe("debian-13");
    expect(machineRelease(rootWith(noble)).key).toBe("ubuntu-24.04");
    expect(machineRelease(rootWith(bookworm)).key).toBe("debian-12");
  });

  it("refuses another release, naming the file and every supported one", () => {
    const root = rootWith('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nVERSION_ID="11"\nID=debian\n');
    expect(() => machineRelease(root)).toThrow(UserError);
    expect(() => machineRelease(root)).toThrow(
      `this is Debian GNU/Linux 11 (bullseye) (${root}/etc/os-release); the devvm runs on Debian 13 (trixie), Ubuntu 24.04 LTS (noble), Debian 12 (bookworm)`,
    );
    // Ubuntu 22.04 is not "24.04" and Debian's ID is not ubuntu's.
    expect(() => machineRelease(rootWith('VERSION_ID="22.04"\nID=ubuntu\n'))).toThrow(UserError);
    expect(() => machineRelease(rootWith('VERSION_ID="24.04"\nID=debian\n'))).toThrow(UserError);
  });

  it("keys each release by os-release's ID and VERSION_ID, as bootstrap.sh derives it", () => {
    for (const release of RELEASES) expect(release.key).toBe(`${release.id}-${release.versionId}`);
    expect(parseOsRelease("ID='ubuntu'\nVERSION_ID=\"24.04\"\n# comment\n")).toEqual({
      ID: "ubuntu",
      VERSION_ID: "24.04",
    });
  });
});
