// Imported first by build.ts: ES modules are evaluated in import order, so
// this runs before undici is loaded, which on an older Node fails at load
// with "ReferenceError: File is not defined" and a stack trace. One line
// and exit 2 instead (a usage problem, like every other one).

/** What the dependencies need: undici 7 declares node >=20.18.1 (package.json engines says the same). */
export const MINIMUM_NODE = "20.18.1";

/** Why this Node cannot run the builder, or undefined when it can. */
export function unsupportedNode(version: string): string | undefined {
  const have = version.replace(/^v/, "").split(".").map(Number);
  const need = MINIMUM_NODE.split(".").map(Number);
  for (let i = 0; i < need.length; i++) {
    if ((have[i] ?? 0) > need[i]!) return undefined;
    if ((have[i] ?? 0) < need[i]!) {
      return `error: the devvm builder needs Node.js ${MINIMUM_NODE} or newer, and this is ${version} (Debian 12's nodejs is 18); run ./bootstrap.sh instead: it brings the Node.js pinned in pins.json, verified, and runs the builder with it`;
    }
  }
  return undefined;
}

const refusal = unsupportedNode(process.version);
if (refusal) {
  process.stderr.write(`${refusal}\n`);
  process.exit(2);
}
