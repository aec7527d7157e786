// Where non-admins' code and cluster access come from: the settings, else
// what the admin's own checkout and kubeconfig already use on the real box
// (a default taken from a place that does not exist there would be a bug).
// Credentials in the admin's remote URLs are never passed on.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { hostPath, type BuildContext } from "../../core/context.ts";
import { adminInfraClone } from "../../inputs/settings.ts";

export interface OrgSources {
  infraRemote?: string;
  forgejoInfraRemote?: string;
  repoBase?: string;
  oidcIssuer?: string;
  adminKubeconfig: string;
}

export function orgSources(ctx: Pick<BuildContext, "root" | "settings">): OrgSources {
  const { settings } = ctx;
  const clone = hostPath(
    ctx,
    adminInfraClone(settings, (p) => existsSync(hostPath(ctx, p))),
  );
  const remote = (name: string) => {
    const url = gitConfig(path.join(clone, ".git", "config"), `remote.${name}.url`);
    return url === undefined ? undefined : withoutCredentials(url);
  };
  const forgejoInfraRemote = settings.forgejoInfraRemote ?? remote("forgejo");
  const adminKubeconfig = settings.adminKubeconfig ?? path.join(settings.adminHome, ".kube", "config");
  return {
    infraRemote: settings.infraRemote ?? remote("origin"),
    forgejoInfraRemote,
    repoBase: settings.repoBase ?? (forgejoInfraRemote ? forgejoInfraRemote.replace(/\/[^/]+\/?$/, "") : undefined),
    oidcIssuer: settings.oidcIssuer ?? issuerIn(hostPath(ctx, adminKubeconfig)),
    adminKubeconfig,
  };
}

function gitConfig(file: string, key: string): string | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return (
      execFileSync("git", ["config", "--file", file, "--get", key], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      }).trim() || undefined
    );
  } catch {
    return undefined;
  }
}

/**
 * https://wizard:TOKEN@host/x.git -> https://host/x.git: the admin's token is
 * theirs alone. Only the user part is cut, as text; the rest stays byte for
 * byte (a round trip through URL would rewrite it: lowercase the host, drop a
 * default port, re-encode the path, add a slash). An ssh:// remote keeps its
 * user (`git@` is the account ssh signs in to, not a credential) and loses
 * only a password; an scp-like `git@host:path` has none to lose.
 */
export function withoutCredentials(remote: string): string {
  const scheme = /^[A-Za-z][\w+.-]*:\/\//.exec(remote)?.[0];
  if (!scheme) return remote;
  const authorityEnd = remote.slice(scheme.length).search(/[/?#]/);
  const authority =
    authorityEnd === -1 ? remote.slice(scheme.length) : remote.slice(scheme.length, scheme.length + authorityEnd);
  const at = authority.lastIndexOf("@");
  if (at === -1) return remote;
  const rest = remote.slice(scheme.length + at + 1);
  const user = authority.slice(0, at).split(":")[0]!;
  return /^https?:\/\/$/i.test(scheme) || user === "" ? `${scheme}${rest}` : `${scheme}${user}@${rest}`;
}

/** The --oidc-issuer-url of an oidc-login exec entry in a kubeconfig. */
function issuerIn(kubeconfig: string): string | undefined {
  try {
    const text = readFileSync(kubeconfig, "utf8");
    const doc = parse(text) as { users?: Array<{ user?: { exec?: { args?: unknown[] } } }> } | null;
    const args = (doc?.users ?? []).flatMap((u) => u.user?.exec?.args ?? []).map(String);
    return args.find((a) => a.startsWith("--oidc-issuer-url="))?.slice("--oidc-issuer-url=".length);
  } catch {
    return undefined;
  }
}
