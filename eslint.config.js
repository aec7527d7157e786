// `npm run lint`: Prettier owns the layout (prettier --check), ESLint the
// rest: typescript-eslint's recommended rules, promises nobody awaits in the
// product code (type-aware), and lib/'s layers (scripts/lint/layers.js).
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";
import layers from "./scripts/lint/layers.js";

export default tseslint.config(
  {
    ignores: [
      "node_modules/",
      "output/",
      "dist/",
      "files/",
      "test/support/fixtures/t3/",
      "test/support/stand-ins/verdaccio/",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    plugins: { layers },
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
      // Secrets and terminal output are scrubbed of control characters on purpose.
      "no-control-regex": "off",
      "layers/downward-only": "error",
    },
  },
  {
    // A promise nobody awaits loses its error: checked with types, in the product code.
    files: ["build.ts", "lib/**/*.ts", "stages/**/*.ts", "scripts/**/*.ts"],
    ignores: ["**/*.test.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: { "@typescript-eslint/no-floating-promises": "error", "@typescript-eslint/no-misused-promises": "error" },
  },
);
