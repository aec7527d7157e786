// roster.yaml: who has a workstation, in the live file's format: a
// top-level `users:` map keyed by OS user name. The three names of a person
// differ and are never derived from one another.
import { z } from "zod";
import { reservedNameProblem } from "./system-accounts.ts";

// useradd's own rule (Debian's NAME_REGEX, without capitals): at most 32.
export const OS_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
// Repo names become paths under ~/code (docs/devvm.md "Per-user").
const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// Authentik's (Django's) user names: letters, digits and @ . + - _, at
// most 150. Nothing else may reach /etc/ttyd-user-map's `a=b` lines.
const AUTHENTIK_USER = /^[\p{L}\p{N}@.+_-]{1,150}$/u;
// A Kubernetes namespace is a DNS label (RFC 1123).
const NAMESPACE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

// An empty roster is an error, not "nobody": the next run, the hourly
// reconcile's included, would cut every account (offboarding), and an
// emptied or truncated file must not do that.
const EMPTY_WHY = "an empty roster is refused: the next run would cut every account";
const EMPTY_ROSTER = `lists nobody; expected at least one user (${EMPTY_WHY})`;

const authentikUser = z
  .string()
  .regex(AUTHENTIK_USER, "expected an Authentik user name: letters, digits, @ . + - _, at most 150");
const k8sUser = z
  .string()
  .min(1, "expected a non-empty name")
  .max(253, "expected at most 253 characters")
  .regex(/^[^\s\p{C}]+$/u, "expected a Kubernetes user name without spaces or control characters");
const namespace = z
  .string()
  .regex(
    NAMESPACE,
    "expected a Kubernetes namespace: lower-case letters, digits and -, at most 63, starting and ending with a letter or digit",
  );
const repoName = z
  .string()
  .regex(
    REPO,
    "expected a repo name of letters, digits, ., _ and - (not starting with . _ or -): it becomes a folder in ~/code",
  )
  .refine((repo) => repo !== "infra", "infra is always cloned at ~/code/infra; remove it from repos");

export const RosterUserSchema = z
  .strictObject({
    authentik_user: authentikUser,
    k8s_user: k8sUser,
    tier: z.enum(["admin", "power-user", "namespace-owner"], {
      error: "expected a tier: admin, power-user or namespace-owner",
    }),
    namespaces: z.array(namespace).optional(),
    code_layout: z
      .enum(["single", "workspace"], { error: "expected a code_layout: single or workspace" })
      .default("single"),
    repos: z.array(repoName).optional(),
    parked: z.boolean({ error: "expected parked: true or false" }).default(false),
    // false turns that user's claude-auth-sync timer off (a user who never uses Claude alerted forever).
    claude_auth: z.boolean({ error: "expected claude_auth: true or false" }).default(true),
  })
  .superRefine(
    (user, ctx) => {
      // Runs even when another field of this user failed (see `when`): the value may be raw.
      if (user.tier === "namespace-owner" && !(user.namespaces && user.namespaces.length > 0)) {
        ctx.addIssue({
          code: "custom",
          path: ["tier"],
          message: "a namespace-owner needs a non-empty namespaces list",
        });
      }
      if (user.namespaces !== undefined && (user.tier === "admin" || user.tier === "power-user")) {
        ctx.addIssue({
          code: "custom",
          path: ["namespaces"],
          message: `namespaces are only for tier namespace-owner, not ${user.tier}; remove them or change the tier`,
        });
      }
      if (user.repos && user.code_layout !== "workspace") {
        ctx.addIssue({
          code: "custom",
          path: ["repos"],
          message: "repos are cloned only with code_layout: workspace; add it or remove repos",
        });
      }
    },
    { when: (payload) => typeof payload.value === "object" && payload.value !== null },
  );

const osUserName = z
  .string()
  .regex(OS_USER, "not a valid OS user name (lower case, digits, _ and -, at most 32, not starting with a digit or -)")
  // Of the names OS_USER allows, constructor (and __proto__, refused as a key in every input) are
  // properties of every JavaScript object: refused rather than mistaken for one in some lookup.
  .refine((user) => !(user in Object.prototype), {
    error: (iss) => `"${String(iss.input)}" is refused as an OS user name: JavaScript objects treat it specially`,
  })
  .superRefine((user, ctx) => {
    const reserved = reservedNameProblem(user);
    if (reserved) ctx.addIssue({ code: "custom", message: reserved });
  });

const UsersSchema = z
  .record(osUserName, RosterUserSchema, {
    error: (iss) => (iss.input === null ? EMPTY_ROSTER : "expected a map of OS user names to users"),
  })
  .superRefine(
    (roster, ctx) => {
      const byAuthentik = new Map<string, string>();
      for (const [osUser, user] of Object.entries(roster)) {
        // Runs even when some users failed their own schema (`when` below), so
        // the raw value may not have the shape yet.
        const authentik = (user as { authentik_user?: unknown } | null)?.authentik_user;
        if (typeof authentik !== "string") continue;
        const other = byAuthentik.get(authentik);
        if (other) {
          ctx.addIssue({
            code: "custom",
            path: [osUser, "authentik_user"],
            message: `${authentik} is already ${other}'s authentik_user; each person has their own`,
          });
        } else {
          byAuthentik.set(authentik, osUser);
        }
      }
    },
    // Report duplicates together with every other mistake, not only once the
    // rest is fixed; but only on a map (an empty `users:` is null).
    { when: (payload) => typeof payload.value === "object" && payload.value !== null },
  )
  .refine((roster) => Object.keys(roster).length > 0, EMPTY_ROSTER);

/** The file as written; stages get its `users` map (see loadInputs). */
export const RosterFileSchema = z.strictObject(
  { users: UsersSchema },
  {
    error: (iss) =>
      iss.input == null
        ? `the file is empty (only comments or blank lines); expected a top-level users: map with at least one user (${EMPTY_WHY})`
        : "expected a top-level users: map (the live roster's format)",
  },
);

export type RosterUser = z.infer<typeof RosterUserSchema>;
export type Roster = z.infer<typeof UsersSchema>;
