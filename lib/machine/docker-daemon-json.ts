// Docker's own settings file, /etc/docker/daemon.json, is the admin's: the
// builder merges one key into it ("cgroup-parent": "docker.slice", so that
// every container runs in the capped docker.slice) and keeps every other
// key. A file it cannot read as a JSON object is left alone and named: a
// rewrite would lose what the admin meant, and dockerd refuses such a file
// at its next start anyway.

export const DOCKER_DAEMON_JSON = "/etc/docker/daemon.json";
export const CGROUP_PARENT = "docker.slice";

export type DaemonJsonMerge =
  /** The file as it must be (the same text when it already has the key). */
  | { content: string }
  /** Why the file is left alone. */
  | { problem: string };

/** daemon.json with "cgroup-parent" set; `current` undefined when there is no file. */
export function mergeCgroupParent(current: string | undefined): DaemonJsonMerge {
  if (current === undefined || current.trim() === "")
    return { content: `${JSON.stringify({ "cgroup-parent": CGROUP_PARENT }, null, 2)}\n` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(current);
  } catch (error) {
    return { problem: `it is not valid JSON (${(error as Error).message})` };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    return { problem: `it holds ${Array.isArray(parsed) ? "an array" : String(parsed)}, not a JSON object` };
  const settings = parsed as Record<string, unknown>;
  if (settings["cgroup-parent"] === CGROUP_PARENT) return { content: current };
  // Every other key kept, in its place; the file is laid out as dockerd's documentation shows it.
  return { content: `${JSON.stringify({ ...settings, "cgroup-parent": CGROUP_PARENT }, null, 2)}\n` };
}
