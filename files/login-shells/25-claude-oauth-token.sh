# Installed by the devvm builder (stage login-shells); edits are overwritten.
# The user's own Claude login, when they have one: claude-auth-sync writes
# their setup token to ~/.config/claude-auth-sync/claude-oauth.env
# (CLAUDE_CODE_OAUTH_TOKEN=...). Sourced by bash's login shells and by every
# zsh (Debian's zsh does not read /etc/profile: an interactive zsh once said
# "Not logged in" with a valid token).
if [ -n "${HOME:-}" ] && [ -r "${HOME}/.config/claude-auth-sync/claude-oauth.env" ]; then
  . "${HOME}/.config/claude-auth-sync/claude-oauth.env"
  export CLAUDE_CODE_OAUTH_TOKEN
fi
