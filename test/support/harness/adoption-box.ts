// The live devvm as the old scripts left it, for test/adoption.test.ts (on
// the live box's release) and test/releases.test.ts (on the others): its
// accounts, homes, env files, units and global npm t3, made by a script
// rather than by running those scripts, the roster and cluster users the
// takeover is given, the takeover itself as the README says it (one
// `./bootstrap.sh`), and how both tests read a release's packages and Go.
import { expect, it } from "vitest";
import type { Release } from "../../../lib/machine/releases.ts";
import type { Report } from "../../../lib/output/report.ts";
import type { BuildEnv, BuildRun } from "./build-in-vm.ts";
import { PROJECT_DIR_IN_CONTAINER } from "./copy-project.ts";
import type { DevvmContainer } from "./devvm-container.ts";
import { keepGoCache } from "./go-cache.ts";

/** The release the live devvm runs (docs/devvm.md "Releases"): test/adoption.test.ts takes over a box of it. */
export const LIVE_BOX_RELEASE = "ubuntu-24.04";

export const INPUTS = "/opt/devvm-inputs";
export const TOKEN = "hvs.adoption-stand-in-token";
export const SHARED_OAUTH = "sk-ant-oat01-shared-adoption";
const ALICE_ENV =
  "# provisioned by t3-provision-users\nT3_PORT=3774\nCLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-alice-own-7f3a\nLANG=C.UTF-8\n";
export const ENV_FILES = { wizard: "T3_PORT=3773\n", alice: ALICE_ENV, bob: "T3_PORT=3775\n" };
export const USERS = {
  wizard: { authentik_user: "merlin", k8s_user: "wizard-admin", tier: "admin" },
  alice: { authentik_user: "alice.moreau", k8s_user: "amoreau", tier: "power-user" },
  bob: { authentik_user: "bkowalski", k8s_user: "bob-k", tier: "namespace-owner", namespaces: ["payments"] },
};
export const K8S_USERS = { amoreau: { role: "power-user" }, "bob-k": { role: "namespace-owner" } };
export const OLD = ["t3-provision-users", "t3-autoupdate", "t3-backup-state"];
const DISPATCH = "http://127.0.0.1:3780/";
// What an admin runs after editing the roster: the reconcile's stages, and the installed copy of the inputs it reads.
export const RECONCILE = "builder-install,users,offboarding,logins,instances,claude-auth";

/** The launcher the old scripts' skel gave every account. */
export const OLD_LAUNCHER =
  "#!/bin/bash\n# start-claude.sh from the old setup script\nexec claude --dangerously-skip-permissions\n";

/** What the old scripts left: accounts, homes (each with the old launcher) and a clone, env files, their units and timers running, a global npm t3. */
export const OLD_BOX = `set -e
for u in wizard alice bob; do
  useradd -m -s /bin/bash "$u"
  printf '%b' '${OLD_LAUNCHER.replace(/\n/g, "\\n")}' > /home/$u/start-claude.sh
  chown $u:$u /home/$u/start-claude.sh && chmod 0755 /home/$u/start-claude.sh
done
mkdir -p /home/wizard/code/.git /home/wizard/code/scripts
cp -r ${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-dispatch /home/wizard/code/scripts/t3-dispatch
echo 'decrypted' > /home/wizard/code/secrets.env
chown -R wizard:wizard /home/wizard
mkdir -p /home/alice/code/.git /home/alice/.claude /home/alice/.local/bin
echo 'ref: refs/heads/master' > /home/alice/code/.git/HEAD
echo 'my notes' > /home/alice/code/notes.md
echo '{"theme":"dark"}' > /home/alice/.claude/settings.json
chown -R alice:alice /home/alice
install -d -m 0755 /etc/t3-serve
${Object.entries(ENV_FILES)
  .map(([user, text]) => `printf '%b' '${text.replace(/\n/g, "\\n")}' > /etc/t3-serve/${user}.env`)
  .join("\n")}
chmod 0600 /etc/t3-serve/*.env
for n in ${OLD.join(" ")}; do
  printf '#!/bin/sh\\ntrue\\n' > /usr/local/bin/$n.sh && chmod 0755 /usr/local/bin/$n.sh
  printf '[Unit]\\nDescription=old %s\\n[Service]\\nType=oneshot\\nExecStart=/usr/local/bin/%s.sh\\n' $n $n > /etc/systemd/system/$n.service
  printf '[Unit]\\nDescription=old %s timer\\n[Timer]\\nOnCalendar=hourly\\n[Install]\\nWantedBy=timers.target\\n' $n > /etc/systemd/system/$n.timer
done
systemctl daemon-reload
systemctl enable --now ${OLD.map((n) => `${n}.timer`).join(" ")}
mkdir -p /usr/lib/node_modules/t3/bin
printf '#!/bin/sh\\necho t3 v0.0.25\\n' > /usr/lib/node_modules/t3/bin/t3.js && chmod 0755 /usr/lib/node_modules/t3/bin/t3.js
printf '{"name":"t3","version":"0.0.25"}\\n' > /usr/lib/node_modules/t3/package.json
# alice's t3 database as 0.0.25 left it: one table, one row (a fixture made with sqlite3 3.46; no sqlite3 needed here)
install -d -o alice -g alice /home/alice/.t3 /home/alice/.t3/userdata
install -o alice -g alice -m 0644 ${PROJECT_DIR_IN_CONTAINER}/test/support/fixtures/t3-state-0.0.25.sqlite /home/alice/.t3/userdata/state.sqlite
ln -s ../lib/node_modules/t3/bin/t3.js /usr/bin/t3
`;

export const DAVE = { authentik_user: "dave.d", k8s_user: "ddavis", tier: "power-user" };
export const rosterYaml = (users: Record<string, Record<string, unknown>>) => JSON.stringify({ users }, null, 2);

// Every path under /home with mode, owner, size and content hash, but what the build gives: the
// instances' own state (~/.t3), the shared Codex login (~/.codex, stage logins) and the launcher
// (~/start-claude.sh, stage sessions; the test checks it on its own).
export const HOMES =
  "find /home \\( -name .t3 -o -name .codex -o -name start-claude.sh \\) -prune -o -printf '%p %M %u %g %s\\n' | sort; find /home \\( -name .t3 -o -name .codex -o -name start-claude.sh \\) -prune -o -type f -exec sha256sum {} + | sort";
export const DAVES_FILES =
  "find /home/dave/.kube /home/dave/.codex -printf '%p %M %u %l\\n' | sort; sha256sum /home/dave/.kube/config /home/dave/.codex/AGENTS.md";
// Everything under /etc, /root, /usr and /var/lib with owner, mode and content, but systemd's own state (timer stamps).
export const OUTSIDE_HOMES =
  "find /etc /root /usr /var/lib -xdev -path /var/lib/systemd -prune -o -printf '%p %M %u %g %s %l\\n' | sort; find /etc /root /usr /var/lib -xdev -path /var/lib/systemd -prune -o -type f -exec sha256sum {} + | sort";
// What alice owns outside the homes: her t3 database copies (/var/backups/t3-state/alice, hers by design) and her own temporary files.
export const ALICES_OUTSIDE_HOMES =
  "find / -xdev \\( -path /home -o -path /tmp -o -path /var/tmp -o -path /var/backups/t3-state/alice \\) -prune -o -user alice -print | sort";

/** A request to t3-dispatch as authentik's proxy makes it, for that user. */
export const signIn = (authentikUser: string, cookie?: string) =>
  fetch(DISPATCH, {
    headers: { "X-authentik-username": authentikUser, ...(cookie ? { cookie } : {}) },
    redirect: "manual",
    signal: AbortSignal.timeout(30_000),
  });

/** What Vault holds on the live box: the shared logins, and the cluster's users with their roles. */
export const VAULT_SECRETS = {
  "secret/workstation": { claude_oauth_token: SHARED_OAUTH, codex_shared_auth_json: '{"tokens":{}}\n' },
  "secret/platform": { k8s_users: JSON.stringify(K8S_USERS) },
};

/** alice, as herself: her ~/.kube a link to root's, her ~/.codex a link to a folder under /etc. */
export const PLANT_LINKS_AS_ALICE = [
  "runuser",
  "-u",
  "alice",
  "--",
  "sh",
  "-c",
  "cd && rm -rf .kube .codex && ln -s /root/.kube .kube && ln -s /etc/sudoers.d .codex",
];
/** How a build names those links, following neither. */
export const PLANTED_LINKS_NAMED = [
  "alice: /home/alice/.kube is a link to /root/.kube: not followed",
  "alice: /home/alice/.codex is a link to /etc/sudoers.d: not followed",
];

/**
 * The takeover as an admin starts it on the box: the README's command,
 * `./bootstrap.sh --inputs INPUTS`, from the project's folder (a box of
 * startFreshVm("project")), which installs its fetch tools at this release's
 * apt pins, fetches the pinned Node and runs the builder. The report is the
 * output/report.json it wrote.
 */
export async function takeOverWithBootstrap(vm: DevvmContainer, env: BuildEnv): Promise<BuildRun> {
  const reportFile = `${PROJECT_DIR_IN_CONTAINER}/output/report.json`;
  await vm.exec(["rm", "-f", reportFile], { check: true });
  const run = await vm.exec(["./bootstrap.sh", "--inputs", INPUTS], { workingDir: PROJECT_DIR_IN_CONTAINER, env });
  const report = JSON.parse(await vm.readFile(reportFile)) as Report;
  await keepGoCache(vm);
  return { exitCode: run.exitCode, log: run.stderr, report };
}

const stdout = async (vm: DevvmContainer, command: string) => (await vm.exec(command, { check: true })).stdout.trim();

/** The box's release, as `${ID}-${VERSION_ID}` of its /etc/os-release: the release's key. */
export const releaseKeyOf = (vm: DevvmContainer) => stdout(vm, ". /etc/os-release && echo $ID-$VERSION_ID");

/** What dpkg-query says is installed of each of `names`, keyed by name like a release's apt pins. */
export async function installedVersions(vm: DevvmContainer, names: string[]): Promise<Record<string, string>> {
  const query = await stdout(vm, `dpkg-query -W -f='\${Package} \${Version}\\n' ${names.join(" ")}`);
  return Object.fromEntries(query.split("\n").map((l) => l.split(" ")));
}

/** The installed packages at a backport's version (~bpoN): what came from the release's extra suite. */
export async function backportedPackages(vm: DevvmContainer): Promise<string[]> {
  return (await stdout(vm, "dpkg-query -W -f='${Package} ${Version}\\n'"))
    .split("\n")
    .filter((line) => /~bpo\d+/.test(line))
    .map((line) => line.split(" ")[0]!);
}

/** `go version` of the installed t3-dispatch, and the minor version of the Go that built it (NaN if none). */
export async function dispatchBuiltBy(vm: DevvmContainer): Promise<{ built: string; minor: number }> {
  const built = await stdout(vm, "go version /usr/local/bin/t3-dispatch");
  const [, minor] = /: go1\.(\d+)/.exec(built) ?? [];
  return { built, minor: Number(minor) };
}

/** What the per-release checks of a takeover read, once its box is built. */
export interface TakenOver {
  vm: DevvmContainer;
  /** The takeover by ./bootstrap.sh. */
  first: BuildRun;
  /** The snapshot archive's stand-in, which must never be asked: the release's mirror offers every pin. */
  snapshotRequests: () => unknown[];
  aptPins: Record<string, string>;
}

/**
 * The checks every takeover of an old-scripts box makes on its release
 * (adoption.test.ts on the live box's, releases.test.ts on the others), as
 * tests of the describe block it is called in.
 */
export function takeoverChecksOnItsRelease(release: Release, box: () => TakenOver): void {
  it("builds, on that release", async () => {
    const { vm, first } = box();
    expect(first.exitCode, first.log).toBe(0);
    expect(await releaseKeyOf(vm)).toBe(release.key);
  });

  it("installs exactly that release's apt pins, bootstrap.sh's fetch tools included", async () => {
    const { vm, first, aptPins, snapshotRequests } = box();
    expect(await installedVersions(vm, Object.keys(aptPins))).toEqual(aptPins);
    expect(first.log).toMatch(/^bootstrap: apt: Setting up curl /m);
    // The mirror offered every pin: nothing was asked of the snapshot archive.
    expect(snapshotRequests()).toEqual([]);
    expect(first.log).not.toMatch(/snapshot/);
  });

  it("takes Go, and only Go, from the release's extra suite where it has one", async () => {
    const fromElsewhere = await backportedPackages(box().vm);
    if (release.extraSuite) {
      expect(fromElsewhere).toContain("golang-go");
      expect(fromElsewhere.filter((name) => !/^golang-/.test(name))).toEqual([]);
    } else expect(fromElsewhere).toEqual([]);
  });

  it("builds t3-dispatch from the admin's checkout with the release's Go, 1.22 or newer", async () => {
    const { built, minor } = await dispatchBuiltBy(box().vm);
    expect(minor, built).toBeGreaterThanOrEqual(22);
  });
}
