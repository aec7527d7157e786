// The image test's build (`build.ts image` on this host, with the stand-in
// sources and a Vault stand-in whose address and token are in its
// environment), made once per run and kept as a promise: started early by
// slow-setup.ts when the image test is in the run, so that it runs beside
// the light container tests instead of alone, and awaited by the image test
// (which starts it itself when nothing did). The image test disposes it.
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildImageOnHost, type ImageRun } from "./image-on-host.ts";
import { startStandInSources, type StandInSources } from "../stand-ins/sources.ts";
import { startVaultStandIn, type VaultStandIn } from "../stand-ins/vault.ts";

export const TOKEN = "s.image-test-vault-token";
export const OAUTH = "sk-ant-oat01-image-test-shared-oauth";
export const AUTH_JSON = '{"tokens":{"id_token":"image-test-codex-login"}}\n';

export interface ImageBuild extends AsyncDisposable {
  sources: StandInSources;
  vault: VaultStandIn;
  /** The folder the build wrote into (its out/ holds the archive and its record). */
  output: string;
  built: ImageRun;
}

let building: Promise<ImageBuild> | undefined;

/** The run's image build: started on the first call, the same promise after (even once disposed). */
export function imageBuild(): Promise<ImageBuild> {
  if (!building) {
    building = start();
    // Awaited by the image test; until then a failure must not count as an unhandled rejection.
    building.catch(() => {});
  }
  return building;
}

async function start(): Promise<ImageBuild> {
  const started = Date.now();
  const sources = await startStandInSources();
  const vault = await startVaultStandIn(TOKEN, {
    "secret/workstation": { claude_oauth_token: OAUTH, codex_shared_auth_json: AUTH_JSON },
  });
  const output = await fs.mkdtemp(path.join(tmpdir(), "devvm-image-test-"));
  // Once per run: disposed, it stays the run's build, so no later file starts another.
  const dispose = async () => {
    await fs.rm(output, { recursive: true, force: true });
    await vault[Symbol.asyncDispose]();
    await sources[Symbol.asyncDispose]();
  };
  try {
    // Vault's address and token are there, as on an admin's shell: the image build must not read them.
    const built = await buildImageOnHost(sources, output, {
      env: { VAULT_ADDR: vault.address, VAULT_TOKEN: TOKEN },
      label: "image build",
    });
    process.stderr.write(`image build: exit ${built.exitCode} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    return { sources, vault, output, built, [Symbol.asyncDispose]: dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}
