#!/usr/bin/env bash
# Starts a Claude Code session for this user; every new tmux pane runs it
# (see ~/.tmux.conf). Installed from /etc/skel by the devvm builder, which
# also copies the current one here whenever it changes (stage sessions; not
# for admins): edit it in the builder's repository, not here.
#
# There is deliberately no --model here: the organisation's managed default
# (/etc/claude-code/managed-settings.json) must win.
set -u

# The user's own Claude login (a setup token claude-auth-sync brought from
# Vault), as login shells have it: a pane's command need not be a login shell.
if [ -r /etc/profile.d/25-claude-oauth-token.sh ]; then
  . /etc/profile.d/25-claude-oauth-token.sh
fi

code="$HOME/code"
# No fetch may hold up the session longer than this (seconds, per clone).
fetch_cap=10

say() { printf 'start-claude: %s\n' "$*"; }

# The session's name: the tmux session this pane belongs to, if any.
tmux_session() {
  [ -n "${TMUX:-}" ] || return 0
  if [ -n "${TMUX_PANE:-}" ]; then
    tmux display-message -p -t "$TMUX_PANE" '#S' 2>/dev/null
  else
    tmux display-message -p '#S' 2>/dev/null
  fi
}

# Whether this process is in a scope of the user's own systemd manager: a pane
# tmux (3.4 and newer) moved into tmux-spawn-*.scope, or one made below.
in_user_scope() {
  grep -qE '/user@[0-9]+\.service/.*\.scope$' /proc/self/cgroup 2>/dev/null
}

# tmux 3.4 or newer: it starts each pane in a scope of its own, when it can
# reach the user's manager over the user's bus.
tmux_makes_scopes() {
  local version
  version=$(tmux -V 2>/dev/null) || return 1
  version=${version#tmux }
  [[ $version =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  ((BASH_REMATCH[1] > 3 || (BASH_REMATCH[1] == 3 && BASH_REMATCH[2] >= 4)))
}

# Claude's work runs in a systemd scope of the user's own manager, where the
# box's per-pane memory cap and OOMPolicy=continue apply (docs/devvm.md
# "Containment"): a runaway build in the pane is killed, the conversation
# lives. tmux 3.4 moves a new pane into its scope a moment after the pane's
# command starts, so this waits for it (up to 2 s) before forking Claude. A
# tmux that makes none (Debian 12's 3.3a, built without systemd; or any tmux
# without the user's bus) leaves the pane where it is: Claude then starts in
# a scope of its own (systemd-run --user --scope), when the user's manager
# runs (a login session, or lingering). Without one Claude starts as before.
pane_scope() {
  [ -n "${TMUX:-}" ] || return 0
  in_user_scope && return 0
  local runtime=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}
  if [ -S "$runtime/bus" ] && tmux_makes_scopes; then
    for _ in $(seq 20); do
      sleep 0.1
      in_user_scope && return 0
    done
  fi
  [ -S "$runtime/systemd/private" ] || return 0
  # Asked once with true: a manager that refuses must not keep Claude from starting.
  XDG_RUNTIME_DIR=$runtime systemd-run --user --scope --quiet --collect -- true 2>/dev/null || return 0
  scope=(env "XDG_RUNTIME_DIR=$runtime" systemd-run --user --scope --quiet --collect --)
}

# The user's clones: ~/code itself (single layout) or each clone in it.
clones() {
  if [ -e "$code/.git" ]; then
    printf '%s\n' "$code"
    return
  fi
  local git
  for git in "$code"/*/.git; do
    [ -e "$git" ] && printf '%s\n' "${git%/.git}"
  done
}

# Fetches every remote of one clone, then fast-forwards the checked-out
# branch, whichever it is, only when it has an upstream and the tree is
# clean; anything else is left alone.
freshen() {
  local repo=$1
  local shown=${repo/#"$HOME"/\~} # as ~/code/NAME, the way the user knows it
  # Never a prompt: a password, a passphrase or a host key question would
  # hang here until the cap, and with no one to answer it. (The clone's own
  # ssh command, if it has one, is kept.)
  local ssh=${GIT_SSH_COMMAND:-$(git -C "$repo" config core.sshCommand || echo ssh)}
  if ! GIT_TERMINAL_PROMPT=0 GIT_SSH_COMMAND="$ssh -o BatchMode=yes" \
    timeout -k 2 "$fetch_cap" git -C "$repo" fetch --all --prune --quiet </dev/null >/dev/null 2>&1; then
    say "$shown: could not fetch (offline, or slower than ${fetch_cap}s)"
  fi
  local branch
  branch=$(git -C "$repo" symbolic-ref --quiet --short HEAD 2>/dev/null) || return 0
  git -C "$repo" rev-parse --verify --quiet '@{upstream}' >/dev/null || return 0
  [ -z "$(git -C "$repo" status --porcelain 2>/dev/null)" ] || return 0
  if ! git -C "$repo" merge --ff-only --quiet '@{upstream}' </dev/null >/dev/null 2>&1; then
    say "$shown: $branch has commits its upstream does not; not fast-forwarded"
  fi
}

# Whether the arguments already say which conversation (restore's --resume
# ID, or one given by hand): then no new id is made.
names_conversation() {
  local arg
  for arg in "$@"; do
    case $arg in
    -r | -c | --resume | --resume=* | --continue | --session-id | --session-id=*) return 0 ;;
    esac
  done
  return 1
}

# Claude Code asks a user through its onboarding again when
# hasCompletedOnboarding is missing from ~/.claude.json (the live box lost
# it once). Set only when missing, in a file that is a JSON object; an
# empty or corrupt file is Claude's to repair, and an absent one is left to
# Claude when it has a backup to restore from. Written whole (a temporary
# file renamed), keeping the file's mode.
mark_onboarded() {
  command -v node >/dev/null 2>&1 || return 0
  node -e '
const fs = require("node:fs");
const path = require("node:path");
const file = process.argv[1];
let text = null;
try {
  text = fs.readFileSync(file, "utf8");
} catch (error) {
  if (error.code !== "ENOENT") process.exit(0);
}
let config = {};
let mode = 0o600;
if (text === null) {
  const backups = path.join(path.dirname(file), ".claude", "backups");
  if (fs.existsSync(backups) && fs.readdirSync(backups).some((name) => name.startsWith(".claude.json.backup"))) process.exit(0);
} else {
  try {
    config = JSON.parse(text);
  } catch {
    process.exit(0);
  }
  if (config === null || typeof config !== "object" || Array.isArray(config) || "hasCompletedOnboarding" in config)
    process.exit(0);
  mode = fs.statSync(file).mode & 0o777;
}
config.hasCompletedOnboarding = true;
const real = text === null ? file : fs.realpathSync(file);
const temporary = `${real}.start-claude-${process.pid}`;
fs.writeFileSync(temporary, JSON.stringify(config, null, 2) + "\n", { mode });
fs.renameSync(temporary, real);
' "$HOME/.claude.json" 2>/dev/null || say "could not mark onboarding done in ~/.claude.json"
}

session=$(tmux_session)
printf 'Hello %s. Starting Claude Code%s.\n' "${USER:-$(id -un)}" "${session:+ for session \"$session\"}"

# Land in ~/code, else home. A pane split from one already inside ~/code
# (tmux passes the current folder) stays where it is.
case "$PWD/" in
  "$code"/*) ;;
  *) cd "$code" 2>/dev/null || cd "$HOME" || true ;;
esac

# All clones at once, so several offline remotes still cost one cap.
mapfile -t repos < <(clones)
if [ "${#repos[@]}" -gt 0 ]; then
  say "freshening ${#repos[@]} clone(s) in ~/code"
  for repo in "${repos[@]}"; do
    freshen "$repo" &
  done
  wait
fi

name=()
[ -n "$session" ] && name=(--name "$session")
# Each new conversation gets its own id, so tmux-persist finds it on the
# command line and restore reopens it, rather than guessing among
# transcripts (several panes once resumed the same newest one).
id=()
names_conversation "$@" || id=(--session-id "$(cat /proc/sys/kernel/random/uuid)")
mark_onboarded
scope=()
pane_scope
# Not exec: when Claude fails, the pane must keep a shell (below) rather than
# close, or the web terminal reconnects into the same failure again and again.
# Job control puts Claude in the terminal's foreground group of its own, so
# tmux names the window after it rather than after this script.
set -m
"${scope[@]}" claude --dangerously-skip-permissions "${name[@]}" "${id[@]}" "$@"
status=$?
set +m
[ "$status" -eq 0 ] && exit 0

say "claude exited with status $status. This is a shell in $PWD;"
say "run ~/start-claude.sh to start Claude again, or exit to close this pane."
for shell in "${SHELL:-}" /bin/zsh /bin/bash; do
  [ -n "$shell" ] && [ -x "$shell" ] && exec "$shell" -l
done
exit "$status"
