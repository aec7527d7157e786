// The pipeline, in order. Nothing is discovered: a stage runs here or nowhere.
import type { Stage } from "../lib/stage.ts";
import apt from "./apt.ts";
import claude_code from "./claude-code.ts";
import codex from "./codex.ts";
import extra_ca_certs from "./extra-ca-certs.ts";
import harden_admin_tree from "./harden-admin-tree.ts";
import kubelogin from "./kubelogin.ts";
import managed_settings from "./managed-settings.ts";
import node from "./node.ts";
import preflight from "./preflight.ts";
import skel from "./skel.ts";
import t3 from "./t3.ts";

export const stages: readonly Stage[] = [preflight, apt, extra_ca_certs, node, claude_code, t3, codex, kubelogin, managed_settings, skel, harden_admin_tree];
