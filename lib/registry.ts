// The npm registry the builder downloads from: the DEVVM_NPM_REGISTRY
// setting, else the configuration of the npm that runs the builder. No
// registry address is ever written into the repository.
import { fetch } from "undici";
import type { BuildContext } from "./context.ts";
import { agentFor } from "./download.ts";
import { UserError } from "./errors.ts";
import { fetchError } from "./fetch-error.ts";
import { run } from "./exec.ts";

let resolved: Promise<string> | undefined;

export function registryUrl(ctx: Pick<BuildContext, "settings" | "log">): Promise<string> {
  if (ctx.settings.npmRegistry) return Promise.resolve(ctx.settings.npmRegistry);
  const fromEnv = process.env.npm_config_registry;
  if (fromEnv) return Promise.resolve(fromEnv.replace(/\/+$/, ""));
  resolved ??= run(ctx, "npm", ["config", "get", "registry"]).then(
    (r) => r.stdout.trim().replace(/\/+$/, ""),
    () => {
      throw new UserError("no npm registry is configured", "set DEVVM_NPM_REGISTRY to the registry's URL");
    },
  );
  return resolved;
}

/** Where a registry keeps a version's tarball: <registry>/<name>/-/<basename>-<version>.tgz. */
export function tarballUrl(registry: string, name: string, version: string): string {
  return `${registry}/${name}/-/${name.split("/").pop()}-${version}.tgz`;
}

/** The registry answered 404: it has no such package or version. */
export class NotInRegistryError extends UserError {
  override name = "NotInRegistryError";
  constructor(
    readonly packageName: string,
    readonly version: string,
    readonly registry: string,
  ) {
    super(`${packageName}@${version} is not in the registry ${registry}`, "check the pin in pins.json");
  }
}

export interface VersionInfo {
  version: string;
  dist: { integrity?: string; tarball: string };
}

/** The registry's record of one version (its packument entry). */
export async function versionInfo(ctx: Pick<BuildContext, "settings" | "log">, name: string, version: string): Promise<VersionInfo> {
  const registry = await registryUrl(ctx);
  const url = `${registry}/${name.replace("/", "%2f")}/${version}`;
  const response = await fetch(url, { dispatcher: agentFor(ctx.settings.extraCaCerts), headers: { accept: "application/json" } }).catch((error: unknown) => {
    throw fetchError(url, error);
  });
  if (response.status === 404) throw new NotInRegistryError(name, version, registry);
  if (!response.ok) throw new UserError(`GET ${url}: HTTP ${response.status}`, "check DEVVM_NPM_REGISTRY (or npm's registry setting) and the registry's health");
  const info = (await response.json().catch(() => undefined)) as VersionInfo | undefined;
  if (typeof info?.dist !== "object" || info.dist === null) throw new UserError(`GET ${url}: the answer is not a package version's record`, "check that DEVVM_NPM_REGISTRY is an npm registry");
  return info;
}

/** The registry's `latest` dist-tag of a package. */
export async function latestVersion(ctx: Pick<BuildContext, "settings" | "log">, name: string): Promise<string> {
  const { version } = await versionInfo(ctx, name, "latest");
  if (typeof version !== "string") throw new UserError(`the registry's latest ${name} names no version`, "name the version: --update NAME@VERSION");
  return version;
}
