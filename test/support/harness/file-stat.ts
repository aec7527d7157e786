// What a test asserts about a path in the container: its kind, permission
// bits and owners, read with `stat -c` inside it (the host cannot see them).

export interface FileStat {
  type: "file" | "directory" | "symlink" | "other";
  /** Permission bits with the special ones, four octal digits: "0644", "2770". */
  mode: string;
  owner: string;
  group: string;
  /** Where a symlink points, as written in it. */
  linkTarget?: string;
}

/** `stat -c` format that parseStat reads; %F comes last as it may contain spaces. */
export const STAT_FORMAT = "%a|%U|%G|%F";

export function parseStat(line: string): FileStat {
  const [mode = "", owner = "", group = "", kind = ""] = line.trim().split("|");
  return { type: fileType(kind), mode: mode.padStart(4, "0"), owner, group };
}

function fileType(kind: string): FileStat["type"] {
  if (kind === "directory") return "directory";
  if (kind === "symbolic link") return "symlink";
  // An empty file is "regular empty file".
  if (kind.startsWith("regular")) return "file";
  return "other";
}
