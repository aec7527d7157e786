#!/usr/bin/env bash
# Starts a Claude Code session for this user. Installed from /etc/skel by
# the devvm builder; edit it in the builder's repository, not here.
#
# There is deliberately no --model here: the organisation's managed default
# (/etc/claude-code/managed-settings.json) must win.
set -u

code="$HOME/code"

# Fast-forward the user's clones (~/code itself, or each clone in it) so the
# session starts on fresh code. Never more than 15 s in all, and never a
# prompt: an offline remote must not delay the session.
fast_forward_clones() {
  local dir
  for dir in "$code" "$code"/*/; do
    dir="${dir%/}"
    [ -e "$dir/.git" ] || continue
    git -C "$dir" pull --ff-only --quiet || echo "start-claude: $dir not fast-forwarded" >&2
  done
}

if [ -d "$code" ]; then
  export GIT_TERMINAL_PROMPT=0 GIT_SSH_COMMAND="ssh -o BatchMode=yes -o ConnectTimeout=5"
  export -f fast_forward_clones
  export code
  timeout 15 bash -c fast_forward_clones </dev/null || echo "start-claude: clones not all updated (offline or over 15 s)" >&2
  cd "$code" || true
fi

exec claude "$@"
