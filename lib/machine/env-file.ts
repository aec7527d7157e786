// systemd EnvironmentFile= files (/etc/t3-serve/USER.env) are shared by
// several writers: the builder owns T3_PORT, a login stage appends
// CLAUDE_CODE_OAUTH_TOKEN, an admin may add more. So they are edited in
// place, one key at a time: every line a writer does not own stays byte for
// byte (docs/devvm.md lesson: a rewrite once deleted users' Claude tokens).

const assignment = (key: string) => new RegExp(`^[ \\t]*(?:export[ \\t]+)?${key}[ \\t]*=(.*)$`);

/** The value of the last assignment of key (systemd's rule: the last one wins), unquoted. */
export function envValue(text: string, key: string): string | undefined {
  const pattern = assignment(key);
  let value: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    const match = pattern.exec(line);
    if (match) value = match[1]!.trim().replace(/^(["'])(.*)\1$/, "$2");
  }
  return value;
}

/** text with key set to value: each assignment of key rewritten, else one line appended. */
export function setEnvValue(text: string, key: string, value: string): string {
  const pattern = assignment(key);
  const lines = text.split("\n");
  let found = false;
  const edited = lines.map((line) => {
    if (!pattern.test(line.replace(/\r$/, ""))) return line;
    found = true;
    return `${key}=${value}${line.endsWith("\r") ? "\r" : ""}`;
  });
  if (found) return edited.join("\n");
  const separator = text === "" || text.endsWith("\n") ? "" : "\n";
  return `${text}${separator}${key}=${value}\n`;
}

/** text without the assignments of key whose value is value (unquoted as envValue reads it); every other line kept. */
export function withoutEnvValue(text: string, key: string, value: string): string {
  const pattern = assignment(key);
  return text
    .split("\n")
    .filter((line) => {
      const match = pattern.exec(line.replace(/\r$/, ""));
      return !match || match[1]!.trim().replace(/^(["'])(.*)\1$/, "$2") !== value;
    })
    .join("\n");
}
