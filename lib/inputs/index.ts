// Every input is read, parsed and validated here, once, before any stage
// runs. All problems in all files are reported together.
import { createHash } from "node:crypto";
import path from "node:path";
import { InputError, type InputProblem } from "../core/errors.ts";
import { decodeInput, readInputFile } from "./input-text.ts";
import { parseLocated } from "./located.ts";
import { parsePackages, type AptPackage } from "./packages.ts";
import { PinsSchema, type AptPins, type Pins } from "./pins.ts";
import { RosterFileSchema, type Roster } from "./roster.ts";
import { checkMachineAccounts } from "./system-accounts.ts";
import { releaseByKey } from "../machine/releases.ts";

export const INPUT_FILES = ["packages.txt", "pins.json", "roster.yaml"] as const;

export interface Inputs {
  packages: AptPackage[];
  pins: Pins;
  roster: Roster;
  /** sha256 of each input file's bytes, for the report. */
  hashes: Record<(typeof INPUT_FILES)[number], string>;
}

export interface LoadOptions {
  /** The machine the build manages: its system accounts may not be roster users. Unset: only the known names are refused. */
  root?: string;
  /** `build.ts lock` fills and prunes pins.json's apt pins: packages.txt and pins.json may disagree for it, and only for it. */
  forLock?: boolean;
}

export async function loadInputs(dir: string, options: LoadOptions = {}): Promise<Inputs> {
  const problems: InputProblem[] = [];
  const texts = {} as Record<(typeof INPUT_FILES)[number], string>;
  const hashes = {} as Inputs["hashes"];
  for (const file of INPUT_FILES) {
    let bytes: Buffer;
    let size: number;
    try {
      ({ bytes, size } = await readInputFile(path.join(dir, file)));
    } catch (error) {
      problems.push({ file, message: `cannot read ${path.join(dir, file)}: ${(error as Error).message}` });
      continue;
    }
    hashes[file] = createHash("sha256").update(bytes).digest("hex");
    const decoded = decodeInput(bytes, file, size);
    if ("problem" in decoded) problems.push(decoded.problem);
    else texts[file] = decoded.text;
  }
  if (problems.length > 0) throw new InputError(problems);

  const packages = parsePackages(texts["packages.txt"]);
  const pins = parseLocated(texts["pins.json"], "pins.json", PinsSchema);
  const roster = parseLocated(texts["roster.yaml"], "roster.yaml", RosterFileSchema);
  problems.push(...packages.problems, ...pins.problems, ...roster.problems);
  if (pins.data && !options.forLock) problems.push(...crossCheckApt(packages.packages, pins.data, pins.lineOfKey));
  if (roster.data && options.root !== undefined) {
    problems.push(
      ...checkMachineAccounts(options.root, Object.keys(roster.data.users), (user) =>
        roster.lineOfKey(["users", user]),
      ),
    );
  }
  if (problems.length > 0 || !pins.data || !roster.data) throw new InputError(capPerFile(problems));

  // No prototype: a lookup by any name finds only what the file holds.
  const apt = Object.assign(
    Object.create(null) as Pins["apt"],
    Object.fromEntries(
      Object.entries(pins.data.apt).map(([release, aptPins]) => [
        release,
        Object.assign(Object.create(null) as AptPins, aptPins),
      ]),
    ),
  );
  const users = Object.assign(Object.create(null) as Roster, roster.data.users);
  return { packages: packages.packages, pins: { ...pins.data, apt }, roster: users, hashes };
}

/**
 * packages.txt and each release's block of pins.json agree, in every mode
 * but lock (which makes them agree): a package without a pin, or a pin
 * without a package, stops the build before any stage, --plan and --stage
 * too. A release without a block is the apt stage's to refuse, on that
 * release only: pins.json may hold fewer releases than are supported.
 */
function crossCheckApt(
  packages: AptPackage[],
  pins: Pins,
  lineOfKey: (path: PropertyKey[]) => number | undefined,
): InputProblem[] {
  const listed = new Set(packages.map((p) => p.name));
  return Object.entries(pins.apt).flatMap(([release, aptPins = {}]) => {
    const unpinned = packages
      .filter((p) => !Object.hasOwn(aptPins, p.name))
      .map((p) => ({
        file: "packages.txt",
        line: p.line,
        message: `${p.name} has no apt pin for ${release} in pins.json; run \`build.ts lock\` on a ${releaseByKey(release)?.name ?? release} machine to record its mirror's version`,
      }));
    const leftover = Object.keys(aptPins)
      .filter((name) => !listed.has(name))
      .map((name) => ({
        file: "pins.json",
        line: lineOfKey(["apt", release, name]),
        message: `apt.${release}.${name} is pinned but not in packages.txt; remove the pin or run \`build.ts lock\``,
      }));
    return [...unpinned, ...leftover];
  });
}

/** A mangled file can have a problem on every line: the first few of each file, and how many more. */
const MAX_PROBLEMS_PER_FILE = 50;
function capPerFile(problems: InputProblem[]): InputProblem[] {
  const shown: InputProblem[] = [];
  for (const file of new Set(problems.map((p) => p.file))) {
    const all = problems.filter((p) => p.file === file);
    shown.push(...all.slice(0, MAX_PROBLEMS_PER_FILE));
    const rest = all.slice(MAX_PROBLEMS_PER_FILE);
    if (rest.length > 0)
      shown.push({
        file,
        line: rest[0]!.line,
        message: `and ${rest.length} more problems from here on; fix the ones above first`,
      });
  }
  return shown;
}
