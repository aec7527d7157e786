// Each non-admin's workspace on a booted box of the test release, against a real git
// server (the stand-in: git http-backend behind basic authentication, for
// the org's public infra repository and its Forgejo): the locked infra
// clone, the forgejo remote and upstream, the guarded fast-forward, the
// move to the workspace layout (also after a build killed half way), the
// workspace repos cloned with each user's own token, and the kubeconfig.
// The sources are not set, but for the OIDC issuer: they come from the
// admin's checkout and kubeconfig, as on the real box. Checked from outside: git, files, the
// server's log.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { DevvmContainer } from "./support/harness/devvm-container.ts";
import { buildIn, startFreshVm, type BuildRun } from "./support/harness/build-in-vm.ts";
import { writeInputs, PROJECT_PINS } from "./support/stand-ins/sources.ts";
import { INFRA_SECRET_CIPHERTEXT, startGitStandIn, type GitStandIn } from "./support/stand-ins/git-server.ts";
import { ADMIN_KUBECONFIG, ISSUER } from "./support/fixtures/kubeconfig.ts";

const INPUTS = "/opt/devvm-inputs";
const TOKENS = {
  wizard: "wizard-pat-0a1b",
  alice: "alice-pat-2c3d",
  bob: "bob-pat-4e5f",
  carol: "carol-pat-6a7b",
  erin: "erin-pat-8c9d",
};
const ROSTER = {
  users: {
    wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
    alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
    bob: {
      authentik_user: "bkowalski",
      k8s_user: "bob-k",
      tier: "namespace-owner",
      namespaces: ["payments"],
      code_layout: "workspace",
      repos: ["devvm", "notes"],
    },
    carol: {
      authentik_user: "carol.c",
      k8s_user: "ccarlsen",
      tier: "power-user",
      code_layout: "workspace",
      repos: ["devvm"],
    },
    erin: { authentik_user: "erin.e", k8s_user: "erin", tier: "power-user", code_layout: "workspace" },
  },
};
const ALICE_KUBECONFIG = "# alice's own\napiVersion: v1\nkind: Config\n";

describe("workspaces on a booted box of the test release", () => {
  let git: GitStandIn;
  let vm: DevvmContainer;
  let first: BuildRun;
  let adminTree: string;
  const build = async () => {
    // The issuer set as the real one is, with its trailing slash (kubelogin compares it to the provider's `iss` byte for byte).
    const run = await buildIn(vm, { DEVVM_OIDC_ISSUER: ISSUER }, "--inputs", INPUTS, "--stage", "users,workspaces");
    process.stderr.write(`build --stage users,workspaces: exit ${run.exitCode}\n${run.log}`);
    return run;
  };
  const sh = async (command: string) => (await vm.exec(command, { check: true })).stdout.trim();
  const as = (user: string, command: string) => sh(`runuser -u ${user} -- env HOME=/home/${user} sh -c '${command}'`);
  const outcome = (run: BuildRun) => run.report.stages.find((s) => s.name === "workspaces")?.outcome;
  const listing = (dir: string) =>
    sh(`find ${dir} -printf '%p %M %u %s\\n' | sort; find ${dir} -type f -exec sha256sum {} + | sort`);
  const credentials = (user: keyof typeof TOKENS, token: string) =>
    `printf 'http://${user}:${token}@${new URL(git.url).host}\\n' > /home/${user}/.git-credentials && chmod 0600 /home/${user}/.git-credentials`;

  beforeAll(async () => {
    git = await startGitStandIn();
    for (const [user, token] of Object.entries(TOKENS)) git.addUser(user, token);
    await git.addRepo("devvm", ["bob"], { "README.md": "devvm\n" });
    vm = await startFreshVm();
    await vm.exec("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q git sudo", {
      check: true,
    });
    await writeInputs(vm, INPUTS, PROJECT_PINS);
    await vm.exec(["sh", "-c", `printf %s "$R" > ${INPUTS}/roster.yaml`], {
      check: true,
      env: { R: JSON.stringify(ROSTER) },
    });
    const gitAsRoot =
      "git -c user.name=t -c user.email=t@example.invalid -c filter.git-crypt.smudge=cat -c filter.git-crypt.clean=cat -c filter.git-crypt.required=false";
    await vm.exec(
      [
        "set -e",
        "for u in wizard alice bob carol erin; do useradd -m -s /bin/bash $u; done",
        // The admin's checkout: origin the public repository, forgejo with the admin's own token in the URL.
        `${gitAsRoot} clone -q ${git.publicInfraUrl} /home/wizard/code`,
        `git -C /home/wizard/code remote add forgejo ${git.forgejoInfraUrl.replace("http://", `http://wizard:${TOKENS.wizard}@`)}`,
        `mkdir -p /home/wizard/.kube && printf %s "$KUBE" > /home/wizard/.kube/config`,
        "chown -R wizard:wizard /home/wizard",
        // alice: no code yet, her own kubeconfig.
        credentials("alice", TOKENS.alice),
        `mkdir /home/alice/.kube && printf %s "$ALICE_KUBE" > /home/alice/.kube/config && chown -R alice:alice /home/alice`,
        // bob: a single-layout clone with a local branch, an untracked file and an untracked nested repo.
        credentials("bob", TOKENS.bob),
        `${gitAsRoot} clone -q ${git.publicInfraUrl} /home/bob/code`,
        "git -C /home/bob/code branch bob/topic && echo draft > /home/bob/code/scratch.txt",
        `git init -q -b master /home/bob/code/notes && echo mine > /home/bob/code/notes/n.md && ${gitAsRoot} -C /home/bob/code/notes add . && ${gitAsRoot} -C /home/bob/code/notes commit -qm notes`,
        "chown -R bob:bob /home/bob",
        // carol: a wrong token, and no right to devvm anyway.
        credentials("carol", "not-carols-token"),
        "chown carol:carol /home/carol/.git-credentials",
        // erin: a build was killed in the middle of her move (~/code aside, the new ~/code made).
        `${gitAsRoot} clone -q ${git.publicInfraUrl} /home/erin/code.devvm-migrating && echo keep > /home/erin/code.devvm-migrating/local.txt && mkdir /home/erin/code`,
        credentials("erin", TOKENS.erin),
        "chown -R erin:erin /home/erin && chown bob:bob /home/bob/.git-credentials",
      ].join("\n"),
      { check: true, env: { KUBE: ADMIN_KUBECONFIG, ALICE_KUBE: ALICE_KUBECONFIG } },
    );
    adminTree = await listing("/home/wizard");
    git.clearRequests();
    first = await build();
  });
  afterAll(async () => {
    await vm?.[Symbol.asyncDispose]();
    await git?.[Symbol.asyncDispose]();
  });

  it("builds, with a warning for what it cannot do", () => {
    expect(first.exitCode, first.log).toBe(0);
    expect(outcome(first)).toBe("changed");
    expect(first.log).toMatch(/warning: could not clone devvm for carol: .*; retried next run/);
  });

  it("gives a single-layout user the locked infra clone: theirs, on master, secrets still ciphertext, upstream forgejo/master", async () => {
    expect(await vm.stat("/home/alice/code")).toMatchObject({ type: "directory", owner: "alice" });
    expect(await as("alice", "git -C ~/code symbolic-ref --short HEAD")).toBe("master");
    expect(await sh("sha256sum < /home/alice/code/secrets/prod.env | cut -d' ' -f1")).toBe(
      createHash("sha256").update(INFRA_SECRET_CIPHERTEXT).digest("hex"),
    );
    expect(await as("alice", "git -C ~/code rev-parse --abbrev-ref master@{upstream}")).toBe("forgejo/master");
    expect(await as("alice", "git -C ~/code remote get-url forgejo")).toBe(git.forgejoInfraUrl);
    expect(await as("alice", "git -C ~/code remote get-url origin")).toBe(git.publicInfraUrl);
    expect(await as("alice", "git -C ~/code status --porcelain")).toBe("");
  });

  it("moves a single clone to ~/code/infra whole, hoists the nested repo, and clones the roster repo with the user's own token", async () => {
    expect(await sh("cat /home/bob/code/infra/scratch.txt")).toBe("draft");
    expect(await as("bob", "git -C ~/code/infra branch --list bob/topic")).toContain("bob/topic");
    expect(await as("bob", "git -C ~/code/infra rev-parse --abbrev-ref master@{upstream}")).toBe("forgejo/master");
    expect(await sh("cat /home/bob/code/notes/n.md")).toBe("mine");
    expect(await vm.stat("/home/bob/code/notes")).toMatchObject({ owner: "bob" });
    expect(await sh("cat /home/bob/code/devvm/README.md")).toBe("devvm");
    expect(await vm.stat("/home/bob/code/devvm")).toMatchObject({ owner: "bob" });
    expect(
      git
        .requests()
        .filter((r) => r.path.includes("/devvm.git/") && r.status === 200)
        .map((r) => r.user),
    ).toContain("bob");
  });

  it("gives a user whose token is refused a warning and no clone; the public infra still clones", async () => {
    expect((await vm.exec("test -e /home/carol/code/devvm")).exitCode).toBe(1);
    expect(await sh("ls -A /home/carol/code")).toBe("infra");
    expect(await vm.stat("/home/carol/code")).toMatchObject({ owner: "carol" });
  });

  it("finishes a move a killed build left half done, losing nothing", async () => {
    expect(await sh("cat /home/erin/code/infra/local.txt")).toBe("keep");
    expect((await vm.exec("test -e /home/erin/code.devvm-migrating")).exitCode).toBe(1);
  });

  it("never touches the admin's tree", async () => {
    expect(await listing("/home/wizard")).toBe(adminTree);
  });

  it("writes an OIDC kubeconfig from the admin's cluster where there is none, and leaves an existing one alone", async () => {
    for (const user of ["bob", "carol", "erin"]) {
      expect(await vm.stat(`/home/${user}/.kube`)).toMatchObject({ mode: "0700", owner: user });
      expect(await vm.stat(`/home/${user}/.kube/config`)).toMatchObject({ mode: "0600", owner: user });
      const doc = parse(await vm.readFile(`/home/${user}/.kube/config`));
      expect(doc.clusters[0].cluster).toEqual({
        server: "https://k8s.example.invalid:6443",
        "certificate-authority-data": "Q0EgUEVN",
      });
      expect(doc.users[0].user.exec.args).toContain(`--oidc-issuer-url=${ISSUER}`);
    }
    expect(await vm.readFile("/home/alice/.kube/config")).toBe(ALICE_KUBECONFIG);
  });

  it("a second run changes nothing and makes no clone", async () => {
    // A clone made again would be a new folder renamed into place: a new inode.
    const clones =
      "/home/alice/code /home/bob/code/infra /home/bob/code/devvm /home/bob/code/notes /home/carol/code/infra /home/erin/code/infra";
    const inodes = await sh(`stat -c '%n %i' ${clones}`);
    const second = await build();
    expect(second.exitCode, second.log).toBe(0);
    expect(outcome(second)).toBe("unchanged");
    expect(await sh(`stat -c '%n %i' ${clones}`)).toBe(inodes);
    // A refused token is never erased from the user's own credentials file (git's store helper would).
    expect(await vm.readFile("/home/carol/.git-credentials")).toBe(
      `http://carol:not-carols-token@${new URL(git.url).host}\n`,
    );
  });

  it("fast-forwards a clean clone on master to a new commit, and leaves one on another branch or with a change alone, with a warning", async () => {
    await vm.exec("echo local edit >> /home/carol/code/infra/README.md", { check: true });
    const before = {
      bob: await as("bob", "git -C ~/code/infra rev-parse HEAD"),
      carol: await as("carol", "git -C ~/code/infra rev-parse HEAD"),
    };
    await as("bob", "git -C ~/code/infra checkout -q bob/topic");
    const sha = await git.commit("infra", { "NEWS.md": "news\n" }, "news");
    const third = await build();
    expect(third.exitCode, third.log).toBe(0);
    expect(await as("alice", "git -C ~/code rev-parse HEAD")).toBe(sha);
    expect(await sh("cat /home/alice/code/NEWS.md")).toBe("news");
    expect(await as("bob", "git -C ~/code/infra rev-parse master")).toBe(before.bob);
    expect(await as("bob", "git -C ~/code/infra symbolic-ref --short HEAD")).toBe("bob/topic");
    expect(third.log).toContain(
      "/home/bob/code/infra is 1 commit behind forgejo/master but on branch bob/topic, not master; left as it was",
    );
    expect(await as("carol", "git -C ~/code/infra rev-parse HEAD")).toBe(before.carol);
    expect(await sh("tail -1 /home/carol/code/infra/README.md")).toBe("local edit");
    expect(third.log).toMatch(
      /\/home\/carol\/code\/infra is 1 commit behind \S+ but it has uncommitted changes; left as it was/,
    );
  });
});
