import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { readSettings } from "../../inputs/settings.ts";
import { makeTestRoot, type TestRoot } from "../../../test/support/test-context.ts";
import { userKubeconfig } from "./kubeconfig.ts";
import { orgSources, withoutCredentials } from "./org-sources.ts";

const GIT_CONFIG = `[remote "origin"]
\turl = https://git.example.invalid/org/infra.git
[remote "forgejo"]
\turl = https://wizard:pat-secret@forgejo.example.invalid/org/infra.git
`;

/** Writes a file of the test root, its folders made. */
function put(root: TestRoot, machinePath: string, text: string): void {
  mkdirSync(path.dirname(path.join(root.dir, machinePath)), { recursive: true });
  writeFileSync(path.join(root.dir, machinePath), text);
}

describe("the org's sources", () => {
  it("default to the admin's checkout and kubeconfig, without the admin's credentials", () => {
    using root = makeTestRoot();
    put(root, "home/wizard/code/infra/.git/config", GIT_CONFIG);
    put(
      root,
      "home/wizard/.kube/config",
      "users:\n- name: a\n  user:\n    exec:\n      args: [oidc-login, get-token, --oidc-issuer-url=https://sso.example.invalid/o/k8s/]\n",
    );
    expect(orgSources(root.ctx)).toEqual({
      infraRemote: "https://git.example.invalid/org/infra.git",
      forgejoInfraRemote: "https://forgejo.example.invalid/org/infra.git",
      repoBase: "https://forgejo.example.invalid/org",
      oidcIssuer: "https://sso.example.invalid/o/k8s/",
      adminKubeconfig: "/home/wizard/.kube/config",
    });
  });

  it("are the settings when given, and absent when there is nothing to take them from", () => {
    using root = makeTestRoot({
      settings: readSettings({
        DEVVM_INFRA_REMOTE: "https://a.invalid/infra.git",
        DEVVM_REPO_BASE: "https://b.invalid/org",
      }),
    });
    expect(orgSources(root.ctx)).toEqual({
      infraRemote: "https://a.invalid/infra.git",
      repoBase: "https://b.invalid/org",
      adminKubeconfig: "/home/wizard/.kube/config",
    });
  });

  it("strip a user and token from a URL, and leave scp-like remotes alone", () => {
    expect(withoutCredentials("http://alice:tok@127.0.0.1:8080/forgejo/org/infra.git")).toBe(
      "http://127.0.0.1:8080/forgejo/org/infra.git",
    );
    expect(withoutCredentials("git@forgejo.example.invalid:org/infra.git")).toBe(
      "git@forgejo.example.invalid:org/infra.git",
    );
  });

  it("rewrite nothing else of a remote: host case, default port, path and a trailing slash stay byte for byte", () => {
    expect(withoutCredentials("https://wizard:p%40ss@Forgejo.Example.invalid:443/Org/infra%20x.git/")).toBe(
      "https://Forgejo.Example.invalid:443/Org/infra%20x.git/",
    );
    expect(withoutCredentials("https://u:p@ss@host.invalid/x.git")).toBe("https://host.invalid/x.git");
    expect(withoutCredentials("https://Forgejo.Example.invalid:443/Org/infra.git")).toBe(
      "https://Forgejo.Example.invalid:443/Org/infra.git",
    );
    // ssh's user is the account it signs in to, not a credential.
    expect(withoutCredentials("ssh://git@forgejo.example.invalid:2222/org/infra.git")).toBe(
      "ssh://git@forgejo.example.invalid:2222/org/infra.git",
    );
    expect(withoutCredentials("ssh://git:secret@forgejo.example.invalid/org/infra.git")).toBe(
      "ssh://git@forgejo.example.invalid/org/infra.git",
    );
  });

  it.each([
    ["with its trailing slash", "https://sso.example.invalid/application/o/kubernetes/"],
    ["without one", "https://sso.example.invalid/application/o/kubernetes"],
  ])("keep DEVVM_OIDC_ISSUER %s, byte for byte, into the users' kubeconfig", (_, issuer) => {
    using root = makeTestRoot({ settings: readSettings({ DEVVM_OIDC_ISSUER: issuer }) });
    const sources = orgSources(root.ctx);
    expect(sources.oidcIssuer).toBe(issuer);
    const args = parse(
      userKubeconfig({ name: "prod", server: "https://k8s.example.invalid:6443" }, sources.oidcIssuer!),
    ).users[0].user.exec.args as string[];
    expect(args.filter((a) => a.startsWith("--oidc-issuer-url="))).toEqual([`--oidc-issuer-url=${issuer}`]);
  });

  it("a ssh:// forgejo remote keeps its user in the repos' base", () => {
    using root = makeTestRoot();
    put(
      root,
      "home/wizard/code/.git/config",
      '[remote "forgejo"]\n\turl = ssh://git@forgejo.example.invalid:2222/org/infra.git\n',
    );
    expect(orgSources(root.ctx)).toMatchObject({
      forgejoInfraRemote: "ssh://git@forgejo.example.invalid:2222/org/infra.git",
      repoBase: "ssh://git@forgejo.example.invalid:2222/org",
    });
  });
});
