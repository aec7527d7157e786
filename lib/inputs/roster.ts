// roster.yaml: who has a workstation, in the live file's format: a
// top-level `users:` map keyed by OS user name. The three names of a person
// differ and are never derived from one another.
import { z } from "zod";

// useradd's own rule (Debian's NAME_REGEX, without capitals): at most 32.
export const OS_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
// Repo names become paths under ~/code (docs/devvm.md "Per-user").
const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const name = z.string().min(1, "expected a non-empty name");
const repoName = z
  .string()
  .regex(REPO, "expected a repo name of letters, digits, ., _ and - (not starting with . _ or -): it becomes a folder in ~/code")
  .refine((repo) => repo !== "infra", "infra is always cloned at ~/code/infra; remove it from repos");

export const RosterUserSchema = z
  .strictObject({
    authentik_user: name,
    k8s_user: name,
    tier: z.enum(["admin", "power-user", "namespace-owner"], { error: "expected a tier: admin, power-user or namespace-owner" }),
    namespaces: z.array(name).optional(),
    code_layout: z.enum(["single", "workspace"], { error: "expected a code_layout: single or workspace" }).default("single"),
    repos: z.array(repoName).optional(),
    parked: z.boolean().default(false),
  })
  .superRefine((user, ctx) => {
    // Runs even when another field of this user failed (see `when`): the value may be raw.
    if (user.tier === "namespace-owner" && !(user.namespaces && user.namespaces.length > 0)) {
      ctx.addIssue({ code: "custom", path: ["tier"], message: "a namespace-owner needs a non-empty namespaces list" });
    }
    if (user.namespaces !== undefined && (user.tier === "admin" || user.tier === "power-user")) {
      ctx.addIssue({ code: "custom", path: ["namespaces"], message: `namespaces are only for tier namespace-owner, not ${user.tier}; remove them or change the tier` });
    }
    if (user.repos && user.code_layout !== "workspace") {
      ctx.addIssue({ code: "custom", path: ["repos"], message: "repos are cloned only with code_layout: workspace; add it or remove repos" });
    }
  }, { when: (payload) => typeof payload.value === "object" && payload.value !== null });

const osUserName = z
  .string()
  .regex(OS_USER, "not a valid OS user name (lower case, digits, _ and -, at most 32, not starting with a digit or -)");

const UsersSchema = z.record(osUserName, RosterUserSchema, { error: "expected a map of OS user names to users" }).superRefine(
  (roster, ctx) => {
    const byAuthentik = new Map<string, string>();
    for (const [osUser, user] of Object.entries(roster)) {
      // Runs even when some users failed their own schema (`when` below), so
      // the raw value may not have the shape yet.
      const authentik = (user as { authentik_user?: unknown } | null)?.authentik_user;
      if (typeof authentik !== "string") continue;
      const other = byAuthentik.get(authentik);
      if (other) {
        ctx.addIssue({ code: "custom", path: [osUser, "authentik_user"], message: `${authentik} is already ${other}'s authentik_user; each person has their own` });
      } else {
        byAuthentik.set(authentik, osUser);
      }
    }
  },
  // Report duplicates together with every other mistake, not only once the
  // rest is fixed; but only on a map (an empty `users:` is null).
  { when: (payload) => typeof payload.value === "object" && payload.value !== null },
);

/** The file as written; stages get its `users` map (see loadInputs). */
export const RosterFileSchema = z.strictObject({ users: UsersSchema }, { error: "expected a top-level users: map (the live roster's format)" });

export type RosterUser = z.infer<typeof RosterUserSchema>;
export type Roster = z.infer<typeof UsersSchema>;
