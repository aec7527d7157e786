// Every input is read, parsed and validated here, once, before any stage
// runs. All problems in all files are reported together.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { InputError, type InputProblem } from "../errors.ts";
import { parseLocated } from "./located.ts";
import { parsePackages, type AptPackage } from "./packages.ts";
import { PinsSchema, type Pins } from "./pins.ts";
import { RosterFileSchema, type Roster } from "./roster.ts";

export const INPUT_FILES = ["packages.txt", "pins.json", "roster.yaml"] as const;

export interface Inputs {
  packages: AptPackage[];
  pins: Pins;
  roster: Roster;
  /** sha256 of each input file's bytes, for the report. */
  hashes: Record<(typeof INPUT_FILES)[number], string>;
}

export async function loadInputs(dir: string): Promise<Inputs> {
  const problems: InputProblem[] = [];
  const texts = {} as Record<(typeof INPUT_FILES)[number], string>;
  for (const file of INPUT_FILES) {
    try {
      texts[file] = await readFile(path.join(dir, file), "utf8");
    } catch (error) {
      problems.push({ file, message: `cannot read ${path.join(dir, file)}: ${(error as Error).message}` });
    }
  }
  if (problems.length > 0) throw new InputError(problems);

  const packages = parsePackages(texts["packages.txt"]);
  const pins = parseLocated(texts["pins.json"], "pins.json", PinsSchema);
  const roster = parseLocated(texts["roster.yaml"], "roster.yaml", RosterFileSchema);
  problems.push(...packages.problems, ...pins.problems, ...roster.problems);
  if (pins.data) problems.push(...crossCheckApt(packages.packages, pins.data, pins.lineOf));
  if (problems.length > 0 || !pins.data || !roster.data) throw new InputError(problems);

  const hashes = Object.fromEntries(INPUT_FILES.map((f) => [f, createHash("sha256").update(texts[f]).digest("hex")])) as Inputs["hashes"];
  return { packages: packages.packages, pins: pins.data, roster: roster.data.users, hashes };
}

/** An apt pin for a package the manifest does not list is a leftover. */
function crossCheckApt(packages: AptPackage[], pins: Pins, lineOf: (path: PropertyKey[]) => number | undefined): InputProblem[] {
  const listed = new Set(packages.map((p) => p.name));
  return Object.keys(pins.apt)
    .filter((name) => !listed.has(name))
    .map((name) => ({ file: "pins.json", line: lineOf(["apt", name]), message: `apt.${name} is pinned but not in packages.txt; remove the pin or run \`build.ts lock\`` }));
}
