// pins.json: the lock. Every version is exact; hashes are checked before
// anything they cover is installed. `build.ts lock` writes it.
import semver from "semver";
import { z } from "zod";

const FLOATING = new Set(["latest", "nightly", "next", "canary", "beta", "stable", "*", "x"]);

const exactVersion = z.string().superRefine((value, ctx) => {
  if (FLOATING.has(value.toLowerCase())) {
    ctx.addIssue({ code: "custom", message: `"${value}" is a floating tag; expected an exact version such as 1.2.3` });
  } else if (semver.valid(value) !== value.replace(/^v/, "")) {
    const kind = semver.validRange(value) ? "a range" : "not a version";
    ctx.addIssue({ code: "custom", message: `"${value}" is ${kind}; expected an exact version such as 1.2.3` });
  }
});

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "expected a sha256: 64 lower-case hex digits");
const integrity = z.string().regex(/^sha512-[A-Za-z0-9+/]{86}==$/, "expected an npm integrity: sha512- and 88 base64 characters");

// Debian Policy 5.6.12: [epoch:]upstream[-revision]; no wildcards, no ranges.
const debianVersion = z.string().regex(/^(\d+:)?[0-9][A-Za-z0-9.+~:-]*$/, "expected an exact Debian version such as 1:2.39.5-0+deb12u2");

const NpmPin = z.strictObject({ version: exactVersion, integrity: integrity.optional() });

export const PinsSchema = z.strictObject({
  $comment: z.string().optional(),
  node: z.strictObject({
    // claude-code needs Node >= 22; t3 needs 22.16 or newer (DEVVM.md stage 3).
    version: exactVersion.refine((v) => semver.satisfies(v, ">=22.16.0 <23.0.0"), "expected a 22.x version, 22.16.0 or newer"),
    sha256: sha256.optional(),
    integrity: integrity.optional(),
  }),
  npm: z.strictObject({
    "@anthropic-ai/claude-code": NpmPin,
    "@openai/codex": NpmPin,
    // A nightly once migrated every user's state and broke pairing (DEVVM.md stage 5).
    t3: NpmPin.extend({ version: z.literal("0.0.26", { error: "t3 is pinned to exactly 0.0.26 (DEVVM.md stage 5)" }) }),
  }),
  kubelogin: z.strictObject({
    version: z.literal("v1.36.2", { error: "kubelogin is pinned to v1.36.2; it once followed latest and boxes drifted" }),
    asset: z.literal("kubelogin_linux_amd64.zip"),
    sha256: sha256.optional(),
  }),
  apt: z.record(z.string(), debianVersion).default({}),
});

export type Pins = z.infer<typeof PinsSchema>;
