// The sources a devvm build downloads from, as local stand-ins for the ones
// this machine cannot reach: the registry stand-in (Verdaccio with the t3
// fixtures, proxying the real registry for everything else), the release
// stand-in (kubelogin's fixture zip and the kubectl stand-in) and the Go
// module proxy stand-in (the modules t3-dispatch's source needs). The
// builder is pointed at them only through its settings (DEVVM_NPM_REGISTRY,
// DEVVM_RELEASES_URL, DEVVM_KUBERNETES_RELEASES_URL, DEVVM_GOPROXY) and the
// pins of the fixtures' own bytes (the go.sum of t3-dispatch's fixture);
// its code paths are the ones a real build takes.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Pins } from "../../../lib/inputs/pins.ts";
import { PROJECT_DIR, type BuildEnv } from "../harness/build-in-vm.ts";
import { PROJECT_DIR_IN_CONTAINER } from "../harness/copy-project.ts";
import type { DevvmContainer } from "../harness/devvm-container.ts";
import { kubectlReleaseFiles, makeKubectl, type KubectlBinary } from "../fixtures/kubectl.ts";
import { kubeloginReleaseFiles, makeKubeloginZip, type KubeloginZip } from "../fixtures/kubelogin.ts";
import { T3_HEALTHY } from "../fixtures/t3/publish.ts";
import { GO_CACHE_IN_BOX } from "../harness/go-cache.ts";
import { startArtifactStandIn, type ArtifactStandIn } from "./artifacts.ts";
import { startGoProxyStandIn, type GoProxyStandIn } from "./go-proxy.ts";
import { startRegistryStandIn, type RegistryStandIn } from "./registry.ts";

export const PROJECT_PINS = JSON.parse(readFileSync(path.join(PROJECT_DIR, "pins.json"), "utf8")) as Pins;

export interface StandInSources extends AsyncDisposable {
  registry: RegistryStandIn;
  releases: ArtifactStandIn;
  goProxy: GoProxyStandIn;
  kubelogin: KubeloginZip;
  kubectl: KubectlBinary;
  /** The settings that point a build at the stand-ins. */
  env: BuildEnv;
  /** The project's pins, with the fixtures' hashes where a real source is out of reach here (t3, kubelogin, kubectl). */
  pins: Pins;
  /** Every request any of the stand-ins served since the last clear. */
  requests(): string[];
  clearRequests(): void;
}

/**
 * `ports`: where the registry, the release server and the Go module proxy listen (a test that
 * compares with a box built against stand-ins before gives their ports, so
 * that both builds are given the same settings); default free ones.
 */
export async function startStandInSources(
  ports: { registry?: number; releases?: number; goProxy?: number } = {},
): Promise<StandInSources> {
  const kubelogin = await makeKubeloginZip();
  const kubectl = makeKubectl(PROJECT_PINS.kubectl.version);
  const releaseFiles = {
    ...kubeloginReleaseFiles(kubelogin.zip),
    ...kubectlReleaseFiles(PROJECT_PINS.kubectl.version, kubectl.binary),
  };
  const [registry, releases, goProxy] = await Promise.all([
    startRegistryStandIn({ port: ports.registry }),
    startArtifactStandIn(releaseFiles, ports.releases),
    startGoProxyStandIn({ port: ports.goProxy }),
  ]);
  const pins = structuredClone(PROJECT_PINS);
  pins.npm.t3 = { version: T3_HEALTHY, integrity: await registry.integrityOf("t3", T3_HEALTHY) };
  pins.kubelogin = { ...pins.kubelogin, sha256: kubelogin.zipSha256, binarySha256: kubelogin.binarySha256 };
  pins.kubectl = { ...pins.kubectl, sha256: kubectl.sha256 };
  const stop = async () => {
    await Promise.all([registry.stop(), releases.stop(), goProxy.stop()]);
  };
  return {
    registry,
    releases,
    goProxy,
    kubelogin,
    kubectl,
    env: {
      DEVVM_NPM_REGISTRY: registry.url,
      DEVVM_RELEASES_URL: releases.url,
      DEVVM_KUBERNETES_RELEASES_URL: releases.url,
      DEVVM_GOPROXY: goProxy.url,
      // Go's build cache, kept between the boxes of a release (test/support/harness/go-cache.ts).
      DEVVM_GO_CACHE: GO_CACHE_IN_BOX,
    },
    pins,
    requests: () =>
      [...registry.requests(), ...releases.requests(), ...goProxy.requests()].map((r) => `${r.method} ${r.path}`),
    clearRequests: () => {
      registry.clearRequests();
      releases.clearRequests();
      goProxy.clearRequests();
    },
    [Symbol.asyncDispose]: stop,
  };
}

/** The stand-ins' pins as the pins.json at `file` in the VM. */
export async function writePins(vm: DevvmContainer, file: string, pins: Pins): Promise<void> {
  const encoded = Buffer.from(`${JSON.stringify(pins, null, 2)}\n`).toString("base64");
  await vm.exec(`echo ${encoded} | base64 -d > ${file}`, { check: true });
}

/** An --inputs folder in the VM: the project's packages.txt and roster.yaml with these pins. */
export async function writeInputs(vm: DevvmContainer, dir: string, pins: Pins): Promise<string> {
  const encoded = Buffer.from(`${JSON.stringify(pins, null, 2)}\n`).toString("base64");
  await vm.exec(
    `mkdir -p ${dir} && cp ${PROJECT_DIR_IN_CONTAINER}/packages.txt ${PROJECT_DIR_IN_CONTAINER}/roster.yaml ${dir}/ && echo ${encoded} | base64 -d > ${dir}/pins.json`,
    { check: true },
  );
  return dir;
}
