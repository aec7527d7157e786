import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { readAdminCluster, userKubeconfig } from "./kubeconfig.ts";

const ADMIN = `apiVersion: v1
kind: Config
current-context: admin@prod
clusters:
- name: staging
  cluster: {server: https://staging.invalid:6443}
- name: prod
  cluster:
    server: https://prod.invalid:6443
    certificate-authority: ca.crt
contexts:
- name: admin@prod
  context: {cluster: prod, user: admin}
users:
- name: admin
  user: {token: admin-secret}
`;

describe("kubeconfig", () => {
  it("copies the current cluster's server and CA, never the admin's credentials", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "devvm-kube-"));
    try {
      writeFileSync(path.join(dir, "config"), ADMIN);
      writeFileSync(path.join(dir, "ca.crt"), "CA PEM\n");
      const cluster = readAdminCluster(path.join(dir, "config"), "/home/wizard/.kube/config");
      expect(cluster).toEqual({
        name: "prod",
        server: "https://prod.invalid:6443",
        caData: Buffer.from("CA PEM\n").toString("base64"),
      });
      const text = userKubeconfig(
        cluster as { name: string; server: string },
        "https://sso.invalid/application/o/kubernetes/",
      );
      expect(text).not.toContain("admin-secret");
      const doc = parse(text);
      expect(doc["current-context"]).toBe("prod");
      expect(doc.users[0].user.exec).toMatchObject({
        command: "kubectl",
        args: [
          "oidc-login",
          "get-token",
          "--oidc-issuer-url=https://sso.invalid/application/o/kubernetes/",
          "--oidc-client-id=kubernetes",
          "--oidc-extra-scope=email",
          "--oidc-extra-scope=profile",
          "--oidc-extra-scope=groups",
        ],
        interactiveMode: "IfAvailable",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("says why when the admin's kubeconfig is missing or has no cluster", () => {
    expect(readAdminCluster("/nonexistent/config", "/home/wizard/.kube/config")).toEqual({
      problem: "the admin's kubeconfig /home/wizard/.kube/config cannot be read (ENOENT)",
    });
    const dir = mkdtempSync(path.join(tmpdir(), "devvm-kube-"));
    try {
      writeFileSync(path.join(dir, "config"), "apiVersion: v1\n");
      expect(readAdminCluster(path.join(dir, "config"), "/k")).toEqual({
        problem: "the admin's kubeconfig /k names no cluster with a server",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
