// What a stage changes (or, under --plan, would change), as data: the runner
// prints it, the report stores it. Nothing is learned by parsing logs.

export type Change =
  | { kind: "create"; path: string; what: "file" | "dir" | "symlink"; diff?: string }
  | { kind: "content"; path: string; diff: string }
  | { kind: "mode"; path: string; from: string; to: string }
  | { kind: "owner"; path: string; from: string; to: string }
  | { kind: "symlink"; path: string; from: string; to: string }
  /** `via`: where it came from, when not the mirror (the snapshot archive at a time). */
  | { kind: "package"; name: string; from: string | null; to: string; via?: string }
  | { kind: "action"; description: string };

/** A change that is not a file's: an account, a unit, a clone. */
export const action = (description: string): Change => ({ kind: "action", description });

export function describeChange(change: Change): string {
  switch (change.kind) {
    case "create":
      return `create ${change.what} ${change.path}`;
    case "content":
      return `update ${change.path}`;
    case "mode":
      return `mode ${change.path}: ${change.from} -> ${change.to}`;
    case "owner":
      return `owner ${change.path}: ${change.from} -> ${change.to}`;
    case "symlink":
      return `link ${change.path}: -> ${change.from} becomes -> ${change.to}`;
    case "package": {
      const what = change.from
        ? `package ${change.name}: ${change.from} -> ${change.to}`
        : `install ${change.name} ${change.to}`;
      return change.via ? `${what} (from ${change.via})` : what;
    }
    case "action":
      return change.description;
  }
}

/** The diff a change carries, if any (already redacted for secrets). */
export function diffOf(change: Change): string | undefined {
  return change.kind === "content" || change.kind === "create" ? change.diff : undefined;
}

export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}
