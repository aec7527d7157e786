import { describe, expect, it } from "vitest";
import { AptProgress } from "./apt-progress.ts";

// apt-get install -q -o APT::Status-Fd=3 of four packages (apt 2.6, LC_ALL=C):
// stdout and the status fd as they arrived, the dlstatus lines as recorded on
// Debian 12, the pmstatus lines in the format of apt's dpkgpm.cc.
const STDOUT = `Reading package lists...
Building dependency tree...
Reading state information...
The following NEW packages will be installed:
  cowsay figlet libtext-charwidth-perl tree
0 upgraded, 4 newly installed, 0 to remove and 135 not upgraded.
Need to get 220 kB of archives.
After this operation, 1009 kB of additional disk space will be used.`.split("\n");

const STATUS = `dlstatus:1:0.0000:Retrieving file 1 of 4
dlstatus:1:0.0000:Retrieving file 1 of 4
dlstatus:2:8.4551:Retrieving file 2 of 4
dlstatus:3:21.2313:Retrieving file 3 of 4
dlstatus:4:75.9111:Retrieving file 4 of 4
dlstatus:4:100.0000:Retrieving file 4 of 4
pmstatus:dpkg-exec:0.0000:Running dpkg
pmstatus:libtext-charwidth-perl:0.0000:Installing libtext-charwidth-perl (amd64)
pmstatus:libtext-charwidth-perl:4.5455:Preparing libtext-charwidth-perl (amd64)
pmstatus:libtext-charwidth-perl:9.0909:Unpacking libtext-charwidth-perl (amd64)
pmstatus:cowsay:13.6364:Preparing cowsay (all)
pmstatus:cowsay:18.1818:Unpacking cowsay (all)
pmstatus:figlet:22.7273:Preparing figlet (amd64)
pmstatus:figlet:27.2727:Unpacking figlet (amd64)
pmstatus:tree:31.8182:Preparing tree (amd64)
pmstatus:tree:36.3636:Unpacking tree (amd64)
pmstatus:libtext-charwidth-perl:40.9091:Preparing to configure libtext-charwidth-perl (amd64)
pmstatus:dpkg-exec:40.9091:Running dpkg
pmstatus:libtext-charwidth-perl:45.4545:Configuring libtext-charwidth-perl (amd64)
pmstatus:libtext-charwidth-perl:50.0000:Installed libtext-charwidth-perl (amd64)
pmstatus:cowsay:54.5455:Configuring cowsay (all)
pmstatus:cowsay:59.0909:Installed cowsay (all)
pmstatus:figlet:63.6364:Configuring figlet (amd64)
pmstatus:figlet:68.1818:Installed figlet (amd64)
pmstatus:tree:72.7273:Configuring tree (amd64)
pmstatus:tree:77.2727:Installed tree (amd64)
pmstatus:man-db:90.9091:Running post-installation trigger man-db (amd64)
pmstatus:dpkg-exec:100.0000:Running dpkg`.split("\n");

/** Replays the recording, one status line per `stepMs` of a fake clock. */
function replay(stepMs: number, everyMs = 3000): string[] {
  const lines: string[] = [];
  let now = 0;
  const progress = new AptProgress((l) => lines.push(l), { everyMs, now: () => now });
  for (const line of STDOUT) progress.stdout(line);
  for (const line of STATUS) {
    progress.status(line);
    now += stepMs;
  }
  return lines;
}

describe("AptProgress", () => {
  it("shows the first line of each phase, then one line per interval", () => {
    expect(replay(100)).toEqual([
      "apt: downloading 1 of 4 packages (0% of 220 kB)",
      "apt: unpacking 1 of 4 packages (libtext-charwidth-perl)",
      "apt: setting up 1 of 4 packages (libtext-charwidth-perl)",
      "apt: running triggers (man-db)",
    ]);
  });

  it("shows a line per package at most, when apt is slow", () => {
    expect(replay(5000)).toEqual([
      // apt repeats a line while a file downloads: it is shown once.
      "apt: downloading 1 of 4 packages (0% of 220 kB)",
      "apt: downloading 2 of 4 packages (8% of 220 kB)",
      "apt: downloading 3 of 4 packages (21% of 220 kB)",
      "apt: downloading 4 of 4 packages (75% of 220 kB)",
      "apt: downloading 4 of 4 packages (100% of 220 kB)",
      "apt: unpacking 1 of 4 packages (libtext-charwidth-perl)",
      "apt: unpacking 2 of 4 packages (cowsay)",
      "apt: unpacking 3 of 4 packages (figlet)",
      "apt: unpacking 4 of 4 packages (tree)",
      "apt: setting up 1 of 4 packages (libtext-charwidth-perl)",
      "apt: setting up 2 of 4 packages (cowsay)",
      "apt: setting up 3 of 4 packages (figlet)",
      "apt: setting up 4 of 4 packages (tree)",
      "apt: running triggers (man-db)",
    ]);
  });

  it("reads what is left to fetch and counts upgrades and downgrades", () => {
    const lines: string[] = [];
    const progress = new AptProgress((l) => lines.push(l), { now: () => 0 });
    progress.stdout("2 upgraded, 3 newly installed, 1 downgraded, 0 to remove and 0 not upgraded.");
    progress.stdout("Need to get 12.3 MB/34.5 MB of archives.");
    progress.status("dlstatus:1:3.5000:Retrieving file 1 of 5 (1min 2s remaining)");
    progress.status("pmstatus:git:10.0000:Unpacking git (amd64)");
    progress.status("pmerror:git:10.0000:trying to overwrite '/usr/bin/git', which is also in package x 1");
    expect(lines).toEqual([
      "apt: downloading 1 of 5 packages (3% of 12.3 MB)",
      "apt: unpacking 1 of 6 packages (git)",
      "apt: error: trying to overwrite '/usr/bin/git', which is also in package x 1",
    ]);
  });

  it("still counts without apt's summary, and ignores lines it does not know", () => {
    const lines: string[] = [];
    const progress = new AptProgress((l) => lines.push(l), { now: () => 0 });
    progress.status("pmstatus:git:10.0000:Unpacking git (amd64)");
    progress.status("pmconffile:/etc/x:50:'/etc/x.dpkg-old' '/etc/x' 1 1");
    progress.status("media-change: whatever");
    progress.status("garbage");
    expect(lines).toEqual(["apt: unpacking 1 of 1 packages (git)"]);
  });
});
