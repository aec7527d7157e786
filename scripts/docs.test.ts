// The README and docs/ kept true to the code and to each other: docs/cli.md
// names every option the usage text offers and every setting the builder
// reads from the environment; the README starts with the two fresh-machine
// commands and links every document; every relative link leads somewhere.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { USAGE } from "../lib/cli/args.ts";
import { settingVariables } from "../lib/inputs/settings.ts";

const repo = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const read = (file: string) => readFileSync(path.join(repo, file), "utf8");
const cliDoc = read("docs/cli.md");
const documents = ["README.md", ...readdirSync(path.join(repo, "docs")).map((name) => `docs/${name}`)];

// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
const anchorsOf = (markdown: string) => new Set([...markdown.matchAll(/^#+ (.+)$/gm)].map((m) => anchor(m[1]!)));

describe("docs/cli.md", () => {
  it("explains every option of build.ts --help", () => {
    const options = [...new Set(USAGE.match(/(?<![\w-])--[a-z][a-z0-9-]*/g))];
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

describe("README.md", () => {
  it("starts with the main job and the tests, exactly as a fresh machine runs them", () => {
    const blocks = [...read("README.md").matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
    expect(blocks.slice(0, 2)).toEqual([
      "./bootstrap.sh",
      "npm ci --no-audit --no-fund && scripts/with-docker.sh npm test",
    ]);
  });

  it("links every document under docs/", () => {
    const readme = read("README.md");
    const unlinked = documents.filter((doc) => doc !== "README.md" && !readme.includes(`](${doc})`));
    expect(unlinked).toEqual([]);
  });
});

describe("links between the documents", () => {
  it("lead to files that exist and headings they have", () => {
    const broken = documents.flatMap((doc) =>
      [...read(doc).matchAll(/\]\(([^)\s]+)\)/g)]
        .map((m) => m[1]!)
        .filter((target) => !/^[a-z]+:/.test(target))
        .filter((target) => {
          const [file, hash] = target.split("#");
          const resolved = file ? path.join(path.dirname(doc), file) : doc;
          if (!existsSync(path.join(repo, resolved))) return true;
          return hash !== undefined && resolved.endsWith(".md") && !anchorsOf(read(resolved)).has(hash);
        })
        .map((target) => `${doc}: ${target}`),
    );
    expect(broken).toEqual([]);
  });
});
