// The pipeline, in order. Nothing is discovered: a stage runs here or nowhere.
import type { Stage } from "../lib/stage.ts";
import harden_admin_tree from "./harden-admin-tree.ts";
import managed_settings from "./managed-settings.ts";
import node from "./node.ts";
import preflight from "./preflight.ts";
import skel from "./skel.ts";

export const stages: readonly Stage[] = [preflight, node, managed_settings, skel, harden_admin_tree];
