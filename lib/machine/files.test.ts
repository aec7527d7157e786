import { spawnSync } from "node:child_process";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { applyResource, checkResource, writeFileAtomic, type Resource } from "./files.ts";
import { makeTestRoot } from "../../test/support/test-context.ts";

const file = (content: string, mode = 0o644): Resource => ({ kind: "file", path: "/etc/demo/app.conf", content, mode });

describe("file resources", () => {
  it("creates missing parents, then the file, with its mode", async () => {
    using root = makeTestRoot();
    const changes = await applyResource(root.ctx, file("a=1\n", 0o640));
    expect(changes.map((c) => c.kind)).toEqual(["create", "create", "create"]);
    const real = path.join(root.dir, "etc/demo/app.conf");
    expect(readFileSync(real, "utf8")).toBe("a=1\n");
    expect(statSync(real).mode & 0o7777).toBe(0o640);
    expect(statSync(path.join(root.dir, "etc/demo")).mode & 0o7777).toBe(0o755);
  });

  it("does not write a file whose content, mode and owner already match (mtime stays)", async () => {
    using root = makeTestRoot();
    await applyResource(root.ctx, file("a=1\n"));
    const real = path.join(root.dir, "etc/demo/app.conf");
    utimesSync(real, new Date(2000, 0, 1), new Date(2000, 0, 1));
    const before = statSync(real);
    expect(await applyResource(root.ctx, file("a=1\n"))).toEqual([]);
    const after = statSync(real);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);
  });

  it("fixes only the mode when only the mode differs, in place", async () => {
    using root = makeTestRoot();
    await applyResource(root.ctx, file("a=1\n"));
    const real = path.join(root.dir, "etc/demo/app.conf");
    chmodSync(real, 0o666);
    const inode = statSync(real).ino;
    expect(await applyResource(root.ctx, file("a=1\n"))).toEqual([
      { kind: "mode", path: "/etc/demo/app.conf", from: "0666", to: "0644" },
    ]);
    expect(statSync(real).ino).toBe(inode);
    expect(statSync(real).mode & 0o7777).toBe(0o644);
  });

  it("shows a unified diff of a changed file and redacts a secret's", async () => {
    using root = makeTestRoot();
    await applyResource(root.ctx, file("a=1\nb=2\n"));
    const [change] = await checkResource(root.ctx, file("a=1\nb=3\n"));
    expect(change).toMatchObject({ kind: "content", diff: expect.stringContaining("-b=2\n+b=3") });
    const secret = await checkResource(root.ctx, { ...file("token=hunter2\n"), secret: true } as Resource);
    expect(JSON.stringify(secret)).not.toContain("hunter2");
    expect(JSON.stringify(secret)).not.toContain("b=2");
  });

  it("leaves the live file untouched when the validator refuses the new one", async () => {
    using root = makeTestRoot();
    await applyResource(root.ctx, file("good\n"));
    const refuse = async () => {
      throw new Error("invalid syntax");
    };
    await expect(applyResource(root.ctx, { ...file("bad\n"), validate: refuse } as Resource)).rejects.toThrow(
      "invalid syntax",
    );
    expect(readFileSync(path.join(root.dir, "etc/demo/app.conf"), "utf8")).toBe("good\n");
    expect(readdirSync(path.join(root.dir, "etc/demo"))).toEqual(["app.conf"]);
  });

  it("gives the validator the finished file with its final mode", async () => {
    using root = makeTestRoot();
    let seen = "";
    let mode = 0;
    await applyResource(root.ctx, {
      ...file("content\n", 0o440),
      validate: async (tmp: string) => {
        seen = readFileSync(tmp, "utf8");
        mode = statSync(tmp).mode & 0o7777;
      },
    } as Resource);
    expect(seen).toBe("content\n");
    expect(mode).toBe(0o440);
  });

  it("keeps the old content when the build dies between writing the temporary file and the rename", async () => {
    using root = makeTestRoot();
    const live = path.join(root.dir, "live.conf");
    writeFileSync(live, "old\n");
    // A child process writes new content and is killed (SIGKILL) just before the rename.
    const script = `
      import { writeFileAtomic } from ${JSON.stringify(new URL("./files.ts", import.meta.url).href)};
      await writeFileAtomic(${JSON.stringify(live)}, "new\\n", { mode: 0o644, uid: 0, gid: 0,
        validate: async () => { process.kill(process.pid, "SIGKILL"); await new Promise(() => {}); } });`;
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    expect(child.signal).toBe("SIGKILL");
    expect(readFileSync(live, "utf8")).toBe("old\n");
    const leftovers = readdirSync(root.dir).filter((n) => n !== "live.conf");
    expect(leftovers).toHaveLength(1);
    expect(readFileSync(path.join(root.dir, leftovers[0]!), "utf8")).toBe("new\n");
    // The next write cleans up what the killed build left.
    await writeFileAtomic(live, "newer\n", { mode: 0o644, uid: 0, gid: 0 });
    expect(readdirSync(root.dir)).toEqual(["live.conf"]);
    expect(readFileSync(live, "utf8")).toBe("newer\n");
  });

  it("creates a setgid folder with its owner and mode", async () => {
    using root = makeTestRoot();
    await applyResource(root.ctx, { kind: "dir", path: "/opt/shared", mode: 0o2770, owner: "root", group: "root" });
    expect(statSync(path.join(root.dir, "opt/shared")).mode & 0o7777).toBe(0o2770);
    expect(await checkResource(root.ctx, { kind: "dir", path: "/opt/shared", mode: 0o2770 })).toEqual([]);
  });

  it("points a symlink at its target and repoints it", async () => {
    using root = makeTestRoot();
    const link: Resource = { kind: "symlink", path: "/usr/local/bin/alias", target: "/usr/local/bin/real" };
    expect((await applyResource(root.ctx, link)).at(-1)).toMatchObject({ kind: "create", what: "symlink" });
    expect(await applyResource(root.ctx, link)).toEqual([]);
    const moved = await applyResource(root.ctx, { ...link, target: "/opt/other" } as Resource);
    expect(moved).toEqual([
      { kind: "symlink", path: "/usr/local/bin/alias", from: "/usr/local/bin/real", to: "/opt/other" },
    ]);
    expect(readlinkSync(path.join(root.dir, "usr/local/bin/alias"))).toBe("/opt/other");
    expect(lstatSync(path.join(root.dir, "usr/local/bin/alias")).isSymbolicLink()).toBe(true);
  });

  it("clears permission bits only where the path exists", async () => {
    using root = makeTestRoot();
    const perms: Resource = { kind: "perms", path: "/home/wizard/code", clear: 0o005 };
    expect(await applyResource(root.ctx, perms)).toEqual([]);
    mkdirSync(path.join(root.dir, "home/wizard/code"), { recursive: true });
    chmodSync(path.join(root.dir, "home/wizard/code"), 0o775);
    expect(await applyResource(root.ctx, perms)).toEqual([
      { kind: "mode", path: "/home/wizard/code", from: "0775", to: "0770" },
    ]);
    expect(statSync(path.join(root.dir, "home/wizard/code")).mode & 0o7777).toBe(0o770);
  });

  it("changes nothing on disk in a check", async () => {
    using root = makeTestRoot();
    const changes = await checkResource(root.ctx, file("x\n"));
    expect(changes.length).toBeGreaterThan(0);
    expect(readdirSync(root.dir)).toEqual([]);
  });
});
