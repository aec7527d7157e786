// The containers the other container tests build on: each release's base
// image boots as a fresh VM of that release, with systemd as PID 1, and the
// test release's runs this project's code.
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { baseMirrors, releaseBase, renderAptSources } from "../../../lib/image/release-base.ts";
import { readSettings } from "../../../lib/inputs/settings.ts";
import { parseOsRelease, RELEASES, releaseByKey } from "../../../lib/machine/releases.ts";
import { ensureBaseImage, TEST_RELEASE } from "./base-image.ts";
import { BUILDER_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./copy-project.ts";
import { startDevvm } from "./devvm-container.ts";

const projectDir = fileURLToPath(new URL("../../..", import.meta.url));

describe("devvm container", () => {
  it.each(RELEASES.map((release) => [release.name, release] as const))(
    "boots %s with systemd as PID 1, as a fresh VM of it",
    async (_, release) => {
      await using vm = await startDevvm({ image: await ensureBaseImage(release.key) });

      expect((await vm.exec("systemctl is-system-running")).stdout.trim()).toBe("running");
      expect((await vm.exec("systemctl --failed --no-legend --plain")).stdout.trim()).toBe("");
      expect((await vm.readFile("/proc/1/comm")).trim()).toBe("systemd");
      expect(parseOsRelease(await vm.readFile("/etc/os-release"))).toMatchObject({
        ID: release.id,
        VERSION_ID: release.versionId,
        VERSION_CODENAME: release.codename,
      });
      // The base image is a fresh VM: what the builder installs is not there yet.
      expect((await vm.exec("command -v curl; command -v git")).stdout).toBe("");
      expect(await vm.stat("/etc/passwd")).toEqual({ type: "file", mode: "0644", owner: "root", group: "root" });

      // The release's apt sources, as a fresh VM of it has them, and apt reads them so (no update needed).
      const base = releaseBase(release);
      const mirrors = await baseMirrors(release, readSettings());
      expect(await vm.readFile(base.aptSources.path)).toBe(renderAptSources(base, mirrors));
      expect(await vm.stat(base.aptSources.path)).toMatchObject({ mode: "0644", owner: "root" });
      if (base.aptSources.format === "deb822") {
        expect((await vm.exec(["ls", "/etc/apt/sources.list"])).exitCode, "no second sources file").not.toBe(0);
        expect((await vm.stat(base.aptSources.signedBy)).type).toBe("file");
      }
      const targets = await vm.exec(
        ["apt-get", "indextargets", "--no-release-info", "--format", "$(SITE) $(RELEASE) $(COMPONENT)"],
        { check: true },
      );
      const { suites, securitySuite, components } = release.archive;
      expect(new Set(targets.stdout.trim().split("\n"))).toEqual(
        new Set([
          ...suites.flatMap((suite) => components.map((c) => `${mirrors.archive} ${suite} ${c}`)),
          ...components.map((c) => `${mirrors.security} ${securitySuite} ${c}`),
        ]),
      );
    },
  );

  it(`runs the project's code on ${releaseByKey(TEST_RELEASE)?.name}`, async () => {
    await using vm = await startDevvm();
    await vm.copyProject(projectDir);

    // No history and no node_modules: the box runs the builder's bundle, which needs neither.
    for (const left of [".git", "node_modules"])
      expect(await vm.stat(`${PROJECT_DIR_IN_CONTAINER}/${left}`).catch(() => "absent"), left).toBe("absent");
    const list = await vm.exec([...BUILDER_IN_CONTAINER, "--list"], {
      workingDir: PROJECT_DIR_IN_CONTAINER,
      check: true,
    });
    expect(list.stdout).toMatch(/^preflight\s+Refuses/m);
  });
});
