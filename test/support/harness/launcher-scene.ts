// The scene test/launcher.test.ts sets for the launcher: a claude stand-in
// that records its calls, a remote that never answers, alice's clones, and
// the polling the test waits with.

// Written by both the test (root) and the stand-in (alice).
export const STAND_IN_DIR = "/tmp/claude-stand-in";
export const CALLS = `${STAND_IN_DIR}/calls.log`;
// While this file exists the stand-in keeps running, as a session would.
export const HOLD = `${STAND_IN_DIR}/hold`;
export const EXIT_CODE = `${STAND_IN_DIR}/exit-code`;
// It runs as "claude" in argv[0]: what tmux shows as the pane's command.
export const CLAUDE_STAND_IN = `#!/bin/bash
# Stand-in for Claude Code: records when, where, how and in which cgroup (systemd's) it was called, runs
# while ${HOLD} exists, then exits with the code in ${EXIT_CODE}.
[ -n "\${CLAUDE_STAND_IN:-}" ] || CLAUDE_STAND_IN=1 exec -a claude /bin/bash "$0" "$@"
printf '%s\\t%s\\t%s\\t%s\\n' "$(date +%s.%N)" "$PWD" "$*" "$(grep -m1 '^0::' /proc/self/cgroup | cut -d: -f3)" >> ${CALLS}
echo "stand-in claude is running"
while [ -e ${HOLD} ]; do sleep 0.1; done
exit "$(cat ${EXIT_CODE} 2>/dev/null || echo 0)"
`;
// A remote that takes the connection and never answers: a fetch from it
// hangs until the launcher's cap. It listens on a free port (the container
// shares the host's network) and logs each connection.
export const SILENT_REMOTE = `
const net = require("node:net");
const fs = require("node:fs");
const server = net.createServer((socket) => { fs.appendFileSync("/tmp/silent-remote/connections", "connection\\n"); socket.on("error", () => {}); });
server.listen(0, "127.0.0.1", () => fs.writeFileSync("/tmp/silent-remote/port", String(server.address().port)));
`;
export const FETCH_CAP_MS = 10_000;

/**
 * alice's clones under ~/code (workspace layout), each with a bare "remote" in
 * ~/remotes: a clean master, a dirty one, one on a branch with an upstream,
 * one on a branch without, and one whose remote never answers.
 */
export const REPOS = ["clean", "dirty", "branch", "local", "offline"] as const;
export const setUpRepos = (silentPort: string) => `set -e
cd ~
git config --global user.name Alice && git config --global user.email alice@example.org && git config --global init.defaultBranch master
mkdir -p code remotes
for r in ${REPOS.join(" ")}; do
  git init -q --bare remotes/$r.git
  git clone -q remotes/$r.git code/$r 2>/dev/null
  (cd code/$r && echo one > a && echo one > b && git add a b && git commit -qm one && git push -q -u origin master 2>/dev/null)
done
git -C code/branch checkout -qb feature && git -C code/branch push -q -u origin feature 2>/dev/null
git -C code/local checkout -qb mine
# Each remote's master but the offline one moves a commit ahead, and branch's
# feature too. It touches a only, so git alone would fast-forward the dirty
# clone: only the launcher's guard stops it.
for r in clean dirty branch local; do
  git clone -q remotes/$r.git /tmp/ahead-$r
  (cd /tmp/ahead-$r && echo two >> a && git commit -qam two && git push -q 2>/dev/null)
done
(cd /tmp/ahead-branch && git checkout -q feature && echo three >> a && git commit -qam three && git push -q origin feature 2>/dev/null)
echo mine >> code/dirty/b
git -C code/offline remote set-url origin http://127.0.0.1:${silentPort}/offline.git
`;

/** Polls until probe gives something other than undefined or false; a timeout shows what `scene` says. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
  scene?: () => Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${scene ? `; the screen:\n${await scene()}` : ""}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export function hex(text: string): string {
  return [...Buffer.from(text)].map((byte) => byte.toString(16).padStart(2, "0")).join(" ");
}
