import { npmCliStage } from "./npm-cli-stage.ts";

export default npmCliStage({
  name: "codex",
  description: "Installs the pinned Codex CLI (@openai/codex) for all users: /usr/local/bin/codex",
  package: "@openai/codex",
  // Its native binary comes in an optional dependency; it has no install script.
  bins: ["codex"],
});
