// An ESLint rule: lib/'s folders are layers, and an import points only down
// the list below (a layer may use those before it, never those after it).
// stages/ sit above every layer but cli; build.ts and scripts/ above all.
// core's context names the inputs' and the machine's types (BuildContext
// carries them): type-only imports are exempt for that reason.
import path from "node:path";

export const LAYERS = [
  "core",
  "machine",
  "inputs",
  "sources",
  "output",
  "tools",
  "users",
  "release",
  "image",
  "stages",
  "cli",
];

const REPO = path.resolve(import.meta.dirname, "../..");

function layerOf(file) {
  const relative = path.relative(REPO, file).split(path.sep);
  if (relative[0] === "lib") return relative[1];
  if (relative[0] === "stages") return "stages";
  return undefined;
}

export default {
  rules: {
    "downward-only": {
      meta: {
        type: "problem",
        schema: [],
        messages: {
          upward: "{{from}} may not import from {{to}}: lib/'s layers are {{order}}, and imports point only left",
        },
      },
      create(context) {
        const from = layerOf(context.filename);
        if (!from || context.filename.endsWith(".test.ts")) return {};
        const check = (node, source) => {
          if (!source.startsWith(".") || node.importKind === "type") return;
          const to = layerOf(path.resolve(path.dirname(context.filename), source));
          if (!to || to === from) return;
          if (LAYERS.indexOf(to) > LAYERS.indexOf(from))
            context.report({ node, messageId: "upward", data: { from, to, order: LAYERS.join(" < ") } });
        };
        return {
          ImportDeclaration: (node) => check(node, node.source.value),
          ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
          ExportAllDeclaration: (node) => check(node, node.source.value),
        };
      },
    },
  },
};
