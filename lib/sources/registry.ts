// The npm registry the builder downloads from: the DEVVM_NPM_REGISTRY
// setting, else the configuration of the npm that runs the builder. No
// registry address is ever written into the repository. Its answers are
// read bounded (http-body.ts) and within a deadline; its requests carry no
// credentials, so a redirect cannot take one elsewhere.
import { fetch, type Response } from "undici";
import { SessionSlot } from "../core/build-session.ts";
import type { BuildContext } from "../core/context.ts";
import { agentFor } from "./download.ts";
import { UserError } from "../core/errors.ts";
import { fetchError } from "./fetch-error.ts";
import { readText, type BodyLimit } from "./http-body.ts";
import { run } from "../machine/exec.ts";

// npm's answer, asked once per build.
const RESOLVED = new SessionSlot(() => ({ registry: undefined as Promise<string> | undefined }));

export function registryUrl(ctx: Pick<BuildContext, "settings" | "log" | "session">): Promise<string> {
  if (ctx.settings.npmRegistry) return Promise.resolve(ctx.settings.npmRegistry);
  const fromEnv = process.env.npm_config_registry;
  if (fromEnv) return Promise.resolve(fromEnv.replace(/\/+$/, ""));
  const resolved = ctx.session.get(RESOLVED);
  resolved.registry ??= run(ctx, "npm", ["config", "get", "registry"]).then(
    (r) => r.stdout.trim().replace(/\/+$/, ""),
    () => {
      throw new UserError("no npm registry is configured", "set DEVVM_NPM_REGISTRY to the registry's URL");
    },
  );
  return resolved.registry;
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

/** The registry's record of one version (its packument entry): a few kB, read up to BODY_LIMITS.record. */
export async function versionInfo(
  ctx: Pick<BuildContext, "settings" | "log" | "session">,
  name: string,
  version: string,
): Promise<VersionInfo> {
  const registry = await registryUrl(ctx);
  const url = `${registry}/${name.replace("/", "%2f")}/${version}`;
  const response = await getMetadata(ctx, url, { accept: "application/json" });
  if (response.status === 404) {
    await response.body?.cancel().catch(() => {});
    throw new NotInRegistryError(name, version, registry);
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw new UserError(
      `GET ${url}: HTTP ${response.status}`,
      "check DEVVM_NPM_REGISTRY (or npm's registry setting) and the registry's health",
    );
  }
  const info = parseJson(await readMetadata(url, response, { what: `GET ${url}`, kind: "record" })) as
    VersionInfo | undefined;
  if (typeof info?.dist !== "object" || info.dist === null)
    throw new UserError(
      `GET ${url}: the answer is not a package version's record`,
      "check that DEVVM_NPM_REGISTRY is an npm registry",
    );
  return info;
}

// Metadata is small: a registry that has not sent it whole by then is stuck (or trickling an endless body).
const METADATA_DEADLINE_MS = 120_000;

/** GET url for metadata: no credentials, one deadline for the answer and its body. */
export function getMetadata(
  ctx: Pick<BuildContext, "settings" | "session">,
  url: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    dispatcher: agentFor(ctx),
    headers,
    signal: AbortSignal.timeout(METADATA_DEADLINE_MS),
  }).catch((error: unknown) => {
    throw fetchError(url, error);
  });
}

/** The body of a metadata answer, at most its kind's limit; a failure while reading is named like a failed request. */
export async function readMetadata(url: string, response: Response, limit: BodyLimit): Promise<string> {
  try {
    return await readText(response, limit);
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw fetchError(url, error);
  }
}

/** JSON, or undefined when it is not (the caller says what it expected). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The registry's `latest` dist-tag of a package. */
export async function latestVersion(
  ctx: Pick<BuildContext, "settings" | "log" | "session">,
  name: string,
): Promise<string> {
  const { version } = await versionInfo(ctx, name, "latest");
  if (typeof version !== "string")
    throw new UserError(`the registry's latest ${name} names no version`, "name the version: --update NAME@VERSION");
  return version;
}
