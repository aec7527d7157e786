# Installed by the devvm builder (stage login-shells); edits are overwritten.
# The user's own tools first: ~/.local/bin at the front of PATH, once (a
# nested login shell does not add it again). Sourced by bash's login shells
# through /etc/profile, and by every zsh through /etc/zsh/zshenv.
if [ -n "${HOME:-}" ]; then
  case ":${PATH}:" in
    *":${HOME}/.local/bin:"*) ;;
    *) PATH="${HOME}/.local/bin${PATH:+:${PATH}}"; export PATH ;;
  esac
fi
