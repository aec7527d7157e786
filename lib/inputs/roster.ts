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
    // Runs even when another field of this user failed (see `when`): the value may be raw.
    if (user.tier === "namespace-owner" && !(user.namespaces?.length > 0)) {
      ctx.addIssue({ code: "custom", path: ["tier"], message: "a namespace-owner needs a non-empty namespaces list" });
    }
    if (user.repos && user.code_layout !== "workspace") {
      ctx.addIssue({ code: "custom", path: ["repos"], message: "repos are cloned only with code_layout: workspace; add it or remove repos" });
    }
  }, { when: (payload) => typeof payload.value === "object" && payload.value !== null });

const osUserName = z
  .string()
  .regex(OS_USER, "not a valid OS user name (lower case, digits, _ and -, at most 32, not starting with a digit or -)");

export const RosterSchema = z.record(osUserName, RosterUserSchema, { error: "expected a map of OS user names to users" }).superRefine(
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
  // Report duplicates together with every other mistake, not only once the rest is fixed.
  { when: () => true },
);

export type RosterUser = z.infer<typeof RosterUserSchema>;
export type Roster = z.infer<typeof RosterSchema>;
