// The walk that keeps root from acting through a link a user planted, on a
// test root with its own accounts: alice (uid 4201) and bob (uid 4202) own
// their homes, root's own folders and a secret stand beside them. Needs
// root (chown), as CI and the builder run.
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { BuildContext } from "../core/context.ts";
import { applyResources, planResources, type Resource } from "./files.ts";
import { inspect, moveEntry, readUserFile, removeTree, UnsafePathError } from "./safe-path.ts";
import { walkTo } from "./safe-walk.ts";
import { makeTestRootWithAccounts, type TestRoot } from "../../test/support/test-context.ts";

const ALICE = 4201;
const BOB = 4202;
const asRoot = process.getuid?.() === 0;

/** A root with alice's and bob's homes, root's /root and /etc/sudoers.d, and a run's warnings. */
function homesRoot(
  overrides: Partial<BuildContext> = {},
): TestRoot & { warnings: string[]; real: (p: string) => string } {
  const warnings: string[] = [];
  const root = makeTestRootWithAccounts({ warnings, ...overrides });
  const real = (p: string) => path.join(root.dir, p);
  appendFileSync(
    real("etc/passwd"),
    `alice:x:${ALICE}:${ALICE}::/home/alice:/bin/zsh\nbob:x:${BOB}:${BOB}::/home/bob:/bin/zsh\n`,
  );
  appendFileSync(real("etc/group"), `alice:x:${ALICE}:\nbob:x:${BOB}:\n`);
  for (const [user, uid] of [
    ["alice", ALICE],
    ["bob", BOB],
  ] as const) {
    mkdirSync(real(`home/${user}`), { recursive: true, mode: 0o700 });
    chownSync(real(`home/${user}`), uid, uid);
  }
  mkdirSync(real("root/.kube"), { recursive: true, mode: 0o700 });
  mkdirSync(real("etc/sudoers.d"), { recursive: true, mode: 0o750 });
  writeFileSync(real("etc/shadow-like"), "root:secret\n", { mode: 0o600 });
  return Object.assign(root, { warnings, real });
}

/** As alice would: a path of hers, owned by her. */
function asAlice(real: string, make: (p: string) => void): void {
  make(real);
  const stats = lstatSync(real);
  if (stats.isSymbolicLink()) spawnSync("chown", ["-h", `${ALICE}:${ALICE}`, real]);
  else chownSync(real, ALICE, ALICE);
}

const kubeconfig: Resource[] = [
  { kind: "dir", path: "/home/alice/.kube", mode: 0o700, owner: "alice", group: "alice" },
  {
    kind: "file",
    path: "/home/alice/.kube/config",
    mode: 0o600,
    content: "kind: Config\n",
    owner: "alice",
    group: "alice",
  },
];

/** Every path under the root with its owner, mode and content: what must not change. */
function listing(dir: string): string {
  const out: string[] = [];
  const walk = (p: string) => {
    const stats = lstatSync(p);
    out.push(
      `${path.relative(dir, p)} ${stats.uid} ${(stats.mode & 0o7777).toString(8)} ${stats.isFile() ? readFileSync(p, "base64") : ""}`,
    );
    if (stats.isDirectory()) for (const child of readdirSync(p).sort()) walk(path.join(p, child));
  };
  walk(dir);
  return out.join("\n");
}

describe.skipIf(!asRoot)("root never acts through a link a user planted", () => {
  it("writes a user's file through folders of theirs, owned by them", async () => {
    using root = homesRoot();
    await applyResources(root.ctx, kubeconfig);
    expect(readFileSync(root.real("home/alice/.kube/config"), "utf8")).toBe("kind: Config\n");
    expect(lstatSync(root.real("home/alice/.kube/config"))).toMatchObject({ uid: ALICE, gid: ALICE });
    expect(lstatSync(root.real("home/alice/.kube")).mode & 0o7777).toBe(0o700);
    expect(root.warnings).toEqual([]);
  });

  it("names ~/.kube pointed at root's folder, writes nothing through it, and changes nothing outside", async () => {
    using root = homesRoot();
    asAlice(root.real("home/alice/.kube"), (p) => symlinkSync(root.real("root/.kube"), p));
    const before = listing(root.dir);
    const plan = await planResources(root.ctx, kubeconfig);
    expect(plan).toEqual({ changes: [], managed: [] });
    expect(await applyResources(root.ctx, kubeconfig)).toEqual([]);
    expect(listing(root.dir)).toBe(before);
    expect(existsSync(root.real("root/.kube/config"))).toBe(false);
    expect(root.warnings).toEqual([
      `alice: /home/alice/.kube is a link to ${root.real("root/.kube")}: not followed, nothing done through it`,
    ]);
  });

  it("names ~/.codex pointed at a folder under /etc: no file is made there, and the user owns nothing outside their home", async () => {
    using root = homesRoot();
    asAlice(root.real("home/alice/.codex"), (p) => symlinkSync(root.real("etc/sudoers.d"), p));
    const codex: Resource[] = [
      { kind: "dir", path: "/home/alice/.codex", mode: 0o700, owner: "alice", group: "alice" },
      {
        kind: "symlink",
        path: "/home/alice/.codex/auth.json",
        target: "/opt/codex-shared/auth.json",
        owner: "alice",
        group: "alice",
      },
      {
        kind: "file",
        path: "/home/alice/.codex/AGENTS.md",
        mode: 0o644,
        content: "rules\n",
        owner: "alice",
        group: "alice",
      },
    ];
    expect(await applyResources(root.ctx, codex)).toEqual([]);
    expect(readdirSync(root.real("etc/sudoers.d"))).toEqual([]);
    expect(root.warnings).toHaveLength(1);
    expect(root.warnings[0]).toMatch(/^alice: \/home\/alice\/\.codex is a link to .*\/etc\/sudoers\.d: not followed/);
  });

  it("refuses a folder of another user's, a hard link to root's file and a link in place of a file", async () => {
    using root = homesRoot();
    mkdirSync(root.real("home/alice/shared"));
    chownSync(root.real("home/alice/shared"), BOB, BOB);
    linkSync(root.real("etc/shadow-like"), root.real("home/alice/notes"));
    asAlice(root.real("home/alice/AGENTS.md"), (p) => symlinkSync(root.real("etc/shadow-like"), p));
    const resources: Resource[] = [
      { kind: "file", path: "/home/alice/shared/x", mode: 0o600, content: "x\n", owner: "alice", group: "alice" },
      { kind: "file", path: "/home/alice/notes", mode: 0o600, content: "x\n", owner: "alice", group: "alice" },
      { kind: "file", path: "/home/alice/AGENTS.md", mode: 0o644, content: "x\n", owner: "alice", group: "alice" },
    ];
    const plan = await planResources(root.ctx, resources);
    expect(plan.changes).toEqual([]);
    expect(root.warnings).toEqual([
      "alice: /home/alice/shared belongs to bob: not followed, nothing done through it",
      "alice: /home/alice/notes is a hard link to a file of root's: not followed, nothing done through it",
      `alice: /home/alice/AGENTS.md is a link to ${root.real("etc/shadow-like")}: not followed, nothing done through it`,
    ]);
    // What root reads to decide (a header, a login that exists) is read the same way: the secret never is.
    expect(() => readUserFile(root.ctx, "/home/alice/AGENTS.md")).toThrow(UnsafePathError);
    expect(readFileSync(root.real("etc/shadow-like"), "utf8")).toBe("root:secret\n");
    expect(lstatSync(root.real("etc/shadow-like")).uid).toBe(0);
  });

  it("makes a refusal an error with --strict", async () => {
    using root = homesRoot({ strict: true });
    asAlice(root.real("home/alice/.kube"), (p) => symlinkSync(root.real("root/.kube"), p));
    await expect(planResources(root.ctx, kubeconfig)).rejects.toThrow(UnsafePathError);
  });

  it("follows root's own links in root's own folders (/var/run -> /run), not links in a folder others can write", async () => {
    using root = homesRoot();
    mkdirSync(root.real("run"));
    mkdirSync(root.real("var"));
    symlinkSync("../run", root.real("var/run"));
    await applyResources(root.ctx, [{ kind: "file", path: "/var/run/devvm/x", mode: 0o644, content: "x\n" }]);
    expect(readFileSync(root.real("run/devvm/x"), "utf8")).toBe("x\n");
    mkdirSync(root.real("shared"));
    chmodSync(root.real("shared"), 0o1777);
    symlinkSync(root.real("etc"), root.real("shared/etc"));
    // Nobody but root could have made it so: an error that fails the stage, not a user's warning.
    expect(() => walkTo(root.ctx, "/shared/etc")).toThrow(`/shared/etc is a link to ${root.real("etc")}`);
    expect(() => walkTo(root.ctx, "/shared/etc")).not.toThrow(UnsafePathError);
    expect(root.warnings).toEqual([]);
  });

  it("fails, not warns, where root's own tree is not as it must be (a file where a folder goes), and re-owns nothing there", async () => {
    using root = homesRoot();
    writeFileSync(root.real("etc/t3-serve"), "", { mode: 0o600 });
    await expect(
      applyResources(root.ctx, [
        { kind: "file", path: "/etc/t3-serve/alice.env", mode: 0o600, content: "T3_PORT=3773\n" },
      ]),
    ).rejects.toThrow("/etc/t3-serve is a file, not a folder");
    await expect(applyResources(root.ctx, [{ kind: "dir", path: "/etc/t3-serve", mode: 0o755 }])).rejects.toThrow(
      "/etc/t3-serve is not a folder",
    );
    expect(lstatSync(root.real("etc/t3-serve")).mode & 0o7777).toBe(0o600);
    expect(root.warnings).toEqual([]);
  });

  it("reads a FIFO planted where a file is kept without hanging", async () => {
    using root = homesRoot();
    asAlice(root.real("home/alice/AGENTS.md"), (p) => spawnSync("mkfifo", [p]));
    expect(readUserFile(root.ctx, "/home/alice/AGENTS.md")).toBeNull();
    expect(inspect(root.ctx, "/home/alice/AGENTS.md")?.isFIFO()).toBe(true);
  });

  it("removes a tree without following a link in it, and moves only through folders of the user's", async () => {
    using root = homesRoot();
    asAlice(root.real("home/alice/aside"), (p) => mkdirSync(p));
    asAlice(root.real("home/alice/aside/etc"), (p) => symlinkSync(root.real("etc"), p));
    asAlice(root.real("home/alice/aside/f"), (p) => writeFileSync(p, "f\n"));
    removeTree(root.ctx, "/home/alice/aside");
    expect(existsSync(root.real("home/alice/aside"))).toBe(false);
    expect(readFileSync(root.real("etc/shadow-like"), "utf8")).toBe("root:secret\n");

    asAlice(root.real("home/alice/code"), (p) => symlinkSync(root.real("root"), p));
    mkdirSync(root.real("root/repo"));
    expect(() => moveEntry(root.ctx, "/home/alice/code/repo", "/home/alice/repo")).toThrow(
      /alice: \/home\/alice\/code is a link to/,
    );
    expect(existsSync(root.real("root/repo"))).toBe(true);
  });
});
