// Machine settings that are not part of the pinned inputs: where the admin's
// trees live, and (later) where sources are. Read once from the environment,
// validated like every other input, and documented in the README.
import path from "node:path";
import { z } from "zod";
import { InputError } from "./errors.ts";

const absolutePath = z.string().refine((p) => path.isAbsolute(p), "an absolute path");

const SettingsSchema = z.object({
  /** The admin's tree of clones that hold decrypted secrets (DEVVM.md stage 10). */
  adminCodeDir: absolutePath.default("/home/wizard/code"),
  /** Shared Claude config base whose skills, rules, agents and commands skel links to. */
  sharedClaudeDir: absolutePath.default("/home/wizard/.claude"),
});

export type Settings = z.infer<typeof SettingsSchema>;

/** Environment variable for each setting, so the README and the errors name the same thing. */
export const settingVariables: Record<keyof Settings, string> = {
  adminCodeDir: "DEVVM_ADMIN_CODE_DIR",
  sharedClaudeDir: "DEVVM_SHARED_CLAUDE_DIR",
};

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const raw = Object.fromEntries(
    Object.entries(settingVariables)
      .map(([key, variable]) => [key, env[variable]] as const)
      .filter(([, value]) => value !== undefined && value !== ""),
  );
  const parsed = SettingsSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new InputError(
    parsed.error.issues.map((issue) => ({
      file: `environment ${settingVariables[issue.path[0] as keyof Settings]}`,
      message: `expected ${issue.message}`,
    })),
  );
}
