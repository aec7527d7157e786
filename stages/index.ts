// The pipeline, in order. Nothing is discovered: a stage runs here or nowhere.
import type { Stage } from "../lib/core/stage.ts";
import apt from "./apt.ts";
import builder_install from "./builder-install.ts";
import claude_auth from "./claude-auth.ts";
import claude_code from "./claude-code.ts";
import codex from "./codex.ts";
import containment from "./containment.ts";
import extra_ca_certs from "./extra-ca-certs.ts";
import harden_admin_tree from "./harden-admin-tree.ts";
import instances from "./instances.ts";
import kubectl from "./kubectl.ts";
import kubelogin from "./kubelogin.ts";
import login_shells from "./login-shells.ts";
import managed_settings from "./managed-settings.ts";
import logins from "./logins.ts";
import node from "./node.ts";
import offboarding from "./offboarding.ts";
import service_helpers from "./service-helpers.ts";
import sessions from "./sessions.ts";
import preflight from "./preflight.ts";
import retire_legacy from "./retire-legacy.ts";
import skel from "./skel.ts";
import sudoers from "./sudoers.ts";
import t3 from "./t3.ts";
import t3_migrate_idle from "./t3-migrate-idle.ts";
import units from "./units.ts";
import users from "./users.ts";
import vault_tokens from "./vault-tokens.ts";
import workspaces from "./workspaces.ts";

export const stages: readonly Stage[] = [
  preflight,
  apt,
  extra_ca_certs,
  node,
  claude_code,
  t3,
  codex,
  kubelogin,
  kubectl,
  managed_settings,
  skel,
  // bash and zsh login shells alike find ~/.local/bin and the user's own Claude token.
  login_shells,
  harden_admin_tree,
  vault_tokens,
  service_helpers,
  sudoers,
  builder_install,
  // Caps and weights before the users' work starts; earlyoom (from apt) as the last line.
  containment,
  // The old scripts' reconciler and updater stop before the builder takes over their files.
  retire_legacy,
  // users writes dispatch.json, which t3-dispatch (started by units) needs; the instances need units' template.
  // A user dropped from the roster is cut in the same run; the logins consume what vault-tokens staged.
  users,
  offboarding,
  logins,
  units,
  instances,
  // The instances that were busy at a t3 switch, once idle (its timer runs it in the night window).
  t3_migrate_idle,
  // Each user's login sync, once its units (units) and the users' folders exist.
  claude_auth,
  // Clones and kubeconfigs, as each user, once their accounts exist.
  workspaces,
  // Last: the launcher in users' homes and tmux-persist's saves (the program is service-helpers'); a failure here stops nothing of the users' instances.
  sessions,
];
