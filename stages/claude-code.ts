import { npmCliStage } from "./npm-cli-stage.ts";

export default npmCliStage({
  name: "claude-code",
  description: "Installs the pinned Claude Code (@anthropic-ai/claude-code) for all users: /usr/local/bin/claude",
  package: "@anthropic-ai/claude-code",
  bins: ["claude"],
  // Its postinstall (`node install.cjs`) puts the native binary from
  // @anthropic-ai/claude-code-linux-x64 in place; without it `claude` says its
  // native binary is not installed. No other install script may run.
  allowScripts: ["@anthropic-ai/claude-code"],
});
