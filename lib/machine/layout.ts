// Where the builder puts what it installs. One table, so stages, units and
// tests agree. Machine paths (under --root when one is given).

/** Pinned Node.js trees: <NODE_ROOT>/<version>/{bin/node, lib/node_modules/npm}. */
export const NODE_ROOT = "/opt/devvm/node";
/** Links to the active Node tree's node, npm and npx. */
export const BIN_DIR = "/usr/local/bin";
export const NODE_BIN = `${BIN_DIR}/node`;

/** A version's tree, and what is where inside any Node tree (an installed one, or one still staged). */
export const nodeTree = (nodeVersion: string) => `${NODE_ROOT}/${nodeVersion}`;
export const NODE_IN_TREE = "bin/node";
/** npm's own entry point in a Node tree; run it with that tree's node, not through PATH. */
export const NPM_CLI_IN_TREE = "lib/node_modules/npm/bin/npm-cli.js";
export const npmCli = (nodeVersion: string) => `${nodeTree(nodeVersion)}/${NPM_CLI_IN_TREE}`;
export const nodeBinary = (nodeVersion: string) => `${nodeTree(nodeVersion)}/${NODE_IN_TREE}`;

/** Global npm CLIs, one prefix per package and version: <NPM_CLI_ROOT>/<name>/<version>/. */
export const NPM_CLI_ROOT = "/opt/devvm/npm";

/** The builder's own copy on the box, which the timers run (`--stage t3`, `--stage users,instances`). */
export const BUILDER_DIR = "/opt/devvm/builder";

/** State the builder keeps between runs (e.g. restarts still due after a failed build). */
export const STATE_DIR = "/var/lib/devvm";

/** t3-dispatch's own port, on loopback: never a user's. */
export const DISPATCH_PORT = 3780;
