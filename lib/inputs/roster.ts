// roster.yaml: who has a workstation. Keyed by OS user name; the three
// names of a person differ and are never derived from one another.
import { z } from "zod";

// useradd's own rule (Debian's NAME_REGEX, without capitals): at most 32.
const OS_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

const name = z.string().min(1, "expected a non-empty name");

export const RosterUserSchema = z
  .strictObject({
    authentik_user: name,
    k8s_user: name,
    tier: z.enum(["admin", "power-user", "namespace-owner"], { error: "expected a tier: admin, power-user or namespace-owner" }),
    namespaces: z.array(name).default([]),
    code_layout: z.enum(["single", "workspace"], { error: "expected a code_layout: single or workspace" }).default("single"),
    repos: z.array(name).optional(),
    parked: z.boolean().default(false),
  })
  .superRefine((user, ctx) => {
    if (user.tier === "namespace-owner" && user.namespaces.length === 0) {
      ctx.addIssue({ code: "custom", path: ["tier"], message: "a namespace-owner needs a non-empty namespaces list" });
    }
    if (user.repos && user.code_layout !== "workspace") {
      ctx.addIssue({ code: "custom", path: ["repos"], message: "repos are cloned only with code_layout: workspace; add it or remove repos" });
    }
  });

export const RosterSchema = z
  .record(z.string(), RosterUserSchema, { error: "expected a map of OS user names to users" })
  .superRefine((roster, ctx) => {
    const byAuthentik = new Map<string, string>();
    for (const [osUser, user] of Object.entries(roster)) {
      if (!OS_USER.test(osUser)) {
        ctx.addIssue({ code: "custom", path: [osUser], message: `"${osUser}" is not a valid OS user name (lower case, digits, _ and -, at most 32, not starting with a digit or -)` });
      }
      const other = byAuthentik.get(user.authentik_user);
      if (other) {
        ctx.addIssue({ code: "custom", path: [osUser, "authentik_user"], message: `authentik_user ${user.authentik_user} is already ${other}'s; each person has their own` });
      } else {
        byAuthentik.set(user.authentik_user, osUser);
      }
    }
  });

export type RosterUser = z.infer<typeof RosterUserSchema>;
export type Roster = z.infer<typeof RosterSchema>;
