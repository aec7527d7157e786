#!/usr/bin/env bash
# Starts a Claude Code session for this user; every new tmux pane runs it
# (see ~/.tmux.conf). Installed from /etc/skel by the devvm builder; edit it
# in the builder's repository, not here.
#
# There is deliberately no --model here: the organisation's managed default
# (/etc/claude-code/managed-settings.json) must win.
set -u

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

# Fetches every remote of one clone, then fast-forwards master only when it
# is checked out, clean and has an upstream; anything else is left alone.
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
  [ "$(git -C "$repo" symbolic-ref --quiet --short HEAD 2>/dev/null)" = master ] || return 0
  git -C "$repo" rev-parse --verify --quiet 'master@{upstream}' >/dev/null || return 0
  [ -z "$(git -C "$repo" status --porcelain 2>/dev/null)" ] || return 0
  if ! git -C "$repo" merge --ff-only --quiet 'master@{upstream}' </dev/null >/dev/null 2>&1; then
    say "$shown: master has commits its upstream does not; not fast-forwarded"
  fi
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
scope=()
pane_scope
# Not exec: when Claude fails, the pane must keep a shell (below) rather than
# close, or the web terminal reconnects into the same failure again and again.
# Job control puts Claude in the terminal's foreground group of its own, so
# tmux names the window after it rather than after this script.
set -m
"${scope[@]}" claude --dangerously-skip-permissions "${name[@]}" "$@"
status=$?
set +m
[ "$status" -eq 0 ] && exit 0

say "claude exited with status $status. This is a shell in $PWD;"
say "run ~/start-claude.sh to start Claude again, or exit to close this pane."
for shell in "${SHELL:-}" /bin/zsh /bin/bash; do
  [ -n "$shell" ] && [ -x "$shell" ] && exec "$shell" -l
done
exit "$status"
