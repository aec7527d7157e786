// Turns what `apt-get install -o APT::Status-Fd=3` reports into a few
// readable lines: how many packages are downloaded, unpacked and set up.
// Status lines (apt 2.6, LC_ALL=C):
//   dlstatus:3:21.2313:Retrieving file 3 of 4
//   pmstatus:git:33.3333:Unpacking git (amd64)
//   pmstatus:git:50.0000:Configuring git (amd64)
//   pmerror:git:50.0000:<dpkg's message>
// stdout gives the totals: "0 upgraded, 87 newly installed, ..." and
// "Need to get 34.5 MB of archives." (or "Need to get 12.3 MB/34.5 MB ...").
import { performance } from "node:perf_hooks";
import { progressIntervals } from "../core/progress.ts";

type Phase = "downloading" | "unpacking" | "setting up" | "triggers";

export interface AptProgressOptions {
  /** At most one line per this many ms, besides the first line of each phase. */
  everyMs?: number;
  now?: () => number;
}

export class AptProgress {
  private packages: number | undefined;
  private downloadSize: string | undefined;
  private readonly unpacked = new Set<string>();
  private readonly setUp = new Set<string>();
  private readonly phasesShown = new Set<Phase>();
  private lastShown = -Infinity;
  private lastLine = "";
  private readonly everyMs: number;
  private readonly now: () => number;

  constructor(
    private readonly say: (line: string) => void,
    options: AptProgressOptions = {},
  ) {
    this.everyMs = options.everyMs ?? progressIntervals.aptMs;
    this.now = options.now ?? (() => performance.now());
  }

  /** A line of apt-get's stdout: only the totals are read. */
  stdout(line: string): void {
    const summary = /^(\d+) upgraded, (\d+) newly installed, (?:(\d+) reinstalled, )?(?:(\d+) downgraded, )?/.exec(
      line,
    );
    if (summary) this.packages = summary.slice(1).reduce((sum, n) => sum + Number(n ?? 0), 0);
    // "Need to get 12.3 MB/34.5 MB of archives.": the first is what is left to fetch.
    const size = /^Need to get ([\d.,]+ ?[kMGT]?B)(?:\/[\d.,]+ ?[kMGT]?B)? of archives/.exec(line);
    if (size) this.downloadSize = size[1];
  }

  /** A line of the status fd. */
  status(line: string): void {
    const [kind, , percentText, ...rest] = line.split(":");
    const message = rest.join(":");
    const percent = Math.floor(Number(percentText));
    if (kind === "dlstatus") {
      const files = /^Retrieving file (\d+) of (\d+)/.exec(message);
      if (!files) return;
      const of = this.downloadSize ? `${percent}% of ${this.downloadSize}` : `${percent}%`;
      this.show("downloading", `apt: downloading ${files[1]} of ${files[2]} packages (${of})`);
    } else if (kind === "pmerror") {
      this.say(`apt: error: ${message}`);
    } else if (kind === "pmstatus") {
      const [verb, name] = parseAction(message);
      if (verb === "Unpacking") {
        this.unpacked.add(name);
        this.show("unpacking", `apt: unpacking ${this.count(this.unpacked)} packages (${name})`);
      } else if (verb === "Configuring") {
        this.setUp.add(name);
        this.show("setting up", `apt: setting up ${this.count(this.setUp)} packages (${name})`);
      } else if (verb === "Running post-installation trigger") {
        this.show("triggers", `apt: running triggers (${name})`);
      }
    }
  }

  private count(done: Set<string>): string {
    const total = Math.max(this.packages ?? 0, done.size);
    return `${done.size} of ${total}`;
  }

  /** The first line of a phase shows at once; after that, one line per interval, and only when it says something new. */
  private show(phase: Phase, line: string): void {
    const now = this.now();
    if (this.phasesShown.has(phase) && (now - this.lastShown < this.everyMs || line === this.lastLine)) return;
    this.phasesShown.add(phase);
    this.lastShown = now;
    this.lastLine = line;
    this.say(line);
  }
}

const ACTIONS = ["Running post-installation trigger", "Unpacking", "Configuring"];

/** "Unpacking git (amd64)" -> ["Unpacking", "git"]. */
function parseAction(message: string): [string, string] {
  for (const verb of ACTIONS) {
    if (message.startsWith(`${verb} `)) return [verb, message.slice(verb.length + 1).split(" ")[0]!];
  }
  return ["", ""];
}
