import { describe, expect, it } from "vitest";
import { withZshBlock } from "./login-shells.ts";

const DEBIAN =
  '# /etc/zsh/zshenv: system-wide .zshenv file for zsh(1).\nif [[ -z "$PATH" ]]; then export PATH=/usr/bin; fi\n';

describe("the zshenv block", () => {
  it("is appended once, keeping the package's lines byte for byte", () => {
    const once = withZshBlock(DEBIAN);
    expect(once.startsWith(DEBIAN)).toBe(true);
    expect(once).toContain("[ -r /etc/profile.d/10-local-bin.sh ] && . /etc/profile.d/10-local-bin.sh\n");
    expect(once).toContain(". /etc/profile.d/25-claude-oauth-token.sh\n");
    expect(withZshBlock(once)).toBe(once);
  });

  it("replaces an old block in place, what follows it kept", () => {
    const old = `${DEBIAN}# >>> devvm: login shells (stage login-shells), edits are overwritten >>>\nold\n# <<< devvm: login shells <<<\nexport MINE=1\n`;
    const fixed = withZshBlock(old);
    expect(fixed).not.toContain("old\n");
    expect(fixed.endsWith("# <<< devvm: login shells <<<\nexport MINE=1\n")).toBe(true);
    expect(withZshBlock("no newline")).toMatch(/^no newline\n# >>> devvm/);
  });
});
