// docs/cli.md names every option the usage text offers and every setting
// the builder reads from the environment: a new one fails here until it is
// documented.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { USAGE } from "../lib/cli/args.ts";
import { settingVariables } from "../lib/inputs/settings.ts";

const cliDoc = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "docs", "cli.md"), "utf8");

describe("docs/cli.md", () => {
  it("explains every option of build.ts --help", () => {
    const options = [...new Set(USAGE.match(/(?<![\w-])--[a-z][a-z-]*/g))];
    expect(options.length).toBeGreaterThan(10);
    expect(options.filter((option) => !new RegExp(`\`${option}[\` ]`).test(cliDoc))).toEqual([]);
  });

  it("has a row for every setting in the settings table", () => {
    const rows = Object.values(settingVariables).filter(
      (variable) => !new RegExp(`^\\| [^|]*\`${variable}\``, "m").test(cliDoc),
    );
    expect(rows).toEqual([]);
  });
});
