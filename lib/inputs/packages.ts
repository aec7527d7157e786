// packages.txt: one Debian package per line; `#` starts a comment anywhere
// on a line (an inline comment once broke the old parser); blanks ignored.
import type { InputProblem } from "../core/errors.ts";

export interface AptPackage {
  name: string;
  line: number;
}

// Debian Policy 5.6.1: lower case letters, digits, + - . ; at least two
// characters; starts with a letter or digit.
export const DEBIAN_PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;

// A Map, not an object: a package named constructor is an ordinary name.
const FORBIDDEN = new Map<string, string>([
  [
    "kubelogin",
    "the apt package named kubelogin is Microsoft's Azure tool, not the kubectl OIDC plugin (int128/kubelogin) the devvm needs; " +
      "the kubelogin stage installs the right one from its pinned release. Remove this line.",
  ],
]);

export function parsePackages(
  text: string,
  file = "packages.txt",
): { packages: AptPackage[]; problems: InputProblem[] } {
  const packages: AptPackage[] = [];
  const problems: InputProblem[] = [];
  const seen = new Map<string, number>();
  text.split("\n").forEach((raw, index) => {
    const line = index + 1;
    const words = raw.replace(/#.*/, "").trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    if (words.length > 1) {
      problems.push({
        file,
        line,
        message: `expected one package name per line, found ${words.length}: ${words.join(" ")}`,
      });
      return;
    }
    const name = words[0]!;
    if (!DEBIAN_PACKAGE.test(name)) {
      problems.push({
        file,
        line,
        message: `"${name}" is not a valid Debian package name (lower case letters, digits, + - . ; at least two characters)`,
      });
      return;
    }
    const forbidden = FORBIDDEN.get(name);
    if (forbidden) {
      problems.push({ file, line, message: forbidden });
      return;
    }
    const first = seen.get(name);
    if (first !== undefined) {
      problems.push({ file, line, message: `${name} is listed twice, on lines ${first} and ${line}; keep one` });
      return;
    }
    seen.set(name, line);
    packages.push({ name, line });
  });
  return { packages, problems };
}
