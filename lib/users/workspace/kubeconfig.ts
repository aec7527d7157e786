// A non-admin's ~/.kube/config (docs/devvm.md "Per-user", Kubeconfig): the
// cluster's server and CA copied from the admin's kubeconfig, the user
// signing in through `kubectl oidc-login get-token` against the org's
// issuer. Written only where the user has none.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse, stringify } from "yaml";

export interface AdminCluster {
  name: string;
  server: string;
  /** certificate-authority-data (base64), or read from certificate-authority. */
  caData?: string;
}

interface KubeconfigDoc {
  "current-context"?: string;
  contexts?: Array<{ name?: string; context?: { cluster?: string } }>;
  clusters?: Array<{
    name?: string;
    cluster?: { server?: string; "certificate-authority-data"?: string; "certificate-authority"?: string };
  }>;
}

/** The current context's cluster in the admin's kubeconfig, or why it cannot be had. */
export function readAdminCluster(file: string, machinePath: string): AdminCluster | { problem: string } {
  let doc: KubeconfigDoc;
  try {
    doc = (parse(readFileSync(file, "utf8")) ?? {}) as KubeconfigDoc;
  } catch (error) {
    return {
      problem: `the admin's kubeconfig ${machinePath} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message.split("\n")[0]})`,
    };
  }
  const contextName = doc["current-context"] ?? doc.contexts?.[0]?.name;
  const clusterName = doc.contexts?.find((c) => c.name === contextName)?.context?.cluster ?? doc.clusters?.[0]?.name;
  const cluster = doc.clusters?.find((c) => c.name === clusterName)?.cluster;
  if (!clusterName || !cluster?.server)
    return { problem: `the admin's kubeconfig ${machinePath} names no cluster with a server` };
  let caData = cluster["certificate-authority-data"];
  const caFile = cluster["certificate-authority"];
  if (!caData && caFile) {
    try {
      caData = readFileSync(path.resolve(path.dirname(file), caFile)).toString("base64");
    } catch {
      return { problem: `the admin's kubeconfig ${machinePath} names a CA file ${caFile} that cannot be read` };
    }
  }
  return { name: clusterName, server: cluster.server, ...(caData ? { caData } : {}) };
}

export function userKubeconfig(cluster: AdminCluster, issuer: string): string {
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: cluster.name,
        cluster: {
          server: cluster.server,
          ...(cluster.caData ? { "certificate-authority-data": cluster.caData } : {}),
        },
      },
    ],
    contexts: [{ name: cluster.name, context: { cluster: cluster.name, user: "oidc" } }],
    "current-context": cluster.name,
    users: [
      {
        name: "oidc",
        user: {
          exec: {
            apiVersion: "client.authentication.k8s.io/v1beta1",
            command: "kubectl",
            args: [
              "oidc-login",
              "get-token",
              `--oidc-issuer-url=${issuer}`,
              "--oidc-client-id=kubernetes",
              "--oidc-extra-scope=email",
              "--oidc-extra-scope=profile",
              "--oidc-extra-scope=groups",
            ],
            interactiveMode: "IfAvailable",
          },
        },
      },
    ],
  };
  return `# Written by the devvm builder (stage workspaces) because you had none; it is yours now.\n${stringify(doc)}`;
}
