// The npm registry the builder downloads from: the DEVVM_NPM_REGISTRY
// setting, else the configuration of the npm that runs the builder. No
// registry address is ever written into the repository.
import { fetch } from "undici";
import type { BuildContext } from "./context.ts";
import { agentFor } from "./download.ts";
import { UserError } from "./errors.ts";
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

export interface VersionInfo {
  version: string;
  dist: { integrity?: string; tarball: string };
}

/** The registry's record of one version (its packument entry). */
export async function versionInfo(ctx: Pick<BuildContext, "settings" | "log">, name: string, version: string): Promise<VersionInfo> {
  const registry = await registryUrl(ctx);
  const url = `${registry}/${name.replace("/", "%2f")}/${version}`;
  const response = await fetch(url, { dispatcher: agentFor(ctx.settings.extraCaCerts), headers: { accept: "application/json" } });
  if (response.status === 404) throw new UserError(`${name}@${version} is not in the registry ${registry}`, "check the pin in pins.json");
  if (!response.ok) throw new UserError(`GET ${url}: HTTP ${response.status}`);
  return (await response.json()) as VersionInfo;
}

/** The registry's `latest` dist-tag of a package. */
export async function latestVersion(ctx: Pick<BuildContext, "settings" | "log">, name: string): Promise<string> {
  return (await versionInfo(ctx, name, "latest")).version;
}
