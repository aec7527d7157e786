// Stand-in for a Debian apt mirror and for Debian's snapshot archive
// (https://snapshot.debian.org/archive), which the tests cannot reach or
// cannot make change: a plain HTTP server on 127.0.0.1 serving four small
// probe packages (PROBE_PACKAGES, built with dpkg-deb at start) at the
// versions a test publishes, signed with a key made at start, logging every
// request.
//
//   await using apt = await startAptArchiveStandIn();
//   const a = await apt.publish({ "devvm-probe-one": "1.0-1", "devvm-probe-lib": "1.0-1" });  // "20260103T101500Z"
//   await apt.publish({ "devvm-probe-one": "2.0-1", "devvm-probe-lib": "2.0-1" });
//   deb [signed-by=KEYRING] ${apt.mirrorUrl} trixie main                                 // offers 2.0-1 only
//   deb [signed-by=KEYRING check-valid-until=no] ${apt.snapshotUrl}/debian/${a} trixie main  // offers 1.0-1
//
// The mirror (`/mirror/dists/<suite>/...`, `/mirror/pool/...`) serves the
// last published state; its pool holds that state's files only, as a real
// mirror drops what it no longer offers. The snapshot archive
// (`/archive/<archive>/<YYYYMMDDTHHMMSSZ>/dists|pool/...`, any archive name)
// serves every state at its timestamp and, like the real one, answers a
// time that is not a recorded one with a 301 to the newest state at or
// before it (404 when there is none). Any suite is served, with components
// main and universe: the probes are in `main` of a suite without a `-` (the
// release itself: trixie, bookworm, noble); every other Packages is empty.
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { closeServer, listenOnLoopback } from "./listen.ts";
import { createRequestLog, type RequestLogEntry } from "./request-log.ts";
import { runCommand } from "./run-command.ts";

export const PROBE_PACKAGES = ["devvm-probe-lib", "devvm-probe-one", "devvm-probe-two", "devvm-probe-three"] as const;

export interface AptArchiveStandIn extends AsyncDisposable {
  /** http://127.0.0.1:PORT, no trailing slash. */
  readonly url: string;
  /** The mirror's base: `${url}/mirror` (an apt source line: `deb [signed-by=KEYRING] ${mirrorUrl} <codename> main`). */
  readonly mirrorUrl: string;
  /** The snapshot archive's base, as snapshot.debian.org's https://snapshot.debian.org/archive: `${url}/archive`. */
  readonly snapshotUrl: string;
  /** The test signing key's public keyring, binary (what `gpg --export` writes): for apt's Signed-By. */
  readonly keyring: Buffer;
  /**
   * Publishes a new state of the mirror: these packages at these versions (every probe not named is absent).
   * The snapshot archive records the state with the current time (second resolution, UTC) as its timestamp.
   * Returns that timestamp as YYYYMMDDTHHMMSSZ. Two publishes within the same second: wait until the next
   * second first, so timestamps are strictly increasing.
   */
  publish(versions: Record<string, string>): Promise<string>;
  requests(): RequestLogEntry[];
  clearRequests(): void;
  stop(): Promise<void>;
}

const MAINTAINER = "devvm apt stand-in <apt-stand-in@example.invalid>";
const KEY_USER_ID = "devvm apt stand-in <apt-stand-in@example.invalid>";
// Every file in every .deb has this time (2026-01-01T00:00:00Z), so a (name, version) is the same bytes on every run.
const DEB_EPOCH = 1_767_225_600;
const COMPONENTS = ["main", "universe"] as const;
const ARCHITECTURES = ["amd64", "all"] as const;
// A Debian version: an optional epoch, then an upstream version starting with a digit (and no `/`).
const DEBIAN_VERSION = /^(?:\d+:)?\d[A-Za-z0-9.+~-]*$/;
const TIMESTAMP = /^\d{8}T\d{6}Z$/;

interface ProbeDeb {
  name: string;
  version: string;
  /** Its path under the archive's root, as a Packages stanza's Filename. */
  filename: string;
  bytes: Buffer;
}

interface ArchiveState {
  /** YYYYMMDDTHHMMSSZ; undefined for the empty state the mirror serves before any publish. */
  timestamp?: string;
  date: Date;
  debs: ProbeDeb[];
  /** The Packages of `main` of a release suite (the other Packages are empty). */
  packages: Buffer;
}

interface Signed {
  release: Buffer;
  inRelease: Buffer;
  releaseGpg: Buffer;
}

interface Answer {
  status: 200 | 301;
  body: Buffer;
  type?: string;
  location?: string;
}

/** `port` 0 (the default) is a free one. */
export async function startAptArchiveStandIn({ port = 0 } = {}): Promise<AptArchiveStandIn> {
  const workDir = await mkdtemp(path.join(tmpdir(), "devvm-apt-stand-in-"));
  const gnupgHome = path.join(workDir, "gnupg");
  const stopAgent = () =>
    runCommand("gpgconf", ["--kill", "gpg-agent"], { env: { ...process.env, GNUPGHOME: gnupgHome } }).catch(() => {});
  let server: http.Server | undefined;
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (server) await closeServer(server);
      await stopAgent();
      await rm(workDir, { recursive: true, force: true });
    })());

  try {
    const signer = await createSigner(gnupgHome);
    const debs = new Map<string, Promise<ProbeDeb>>();
    const probeDeb = (name: string, version: string) => {
      const key = `${name}_${version}`;
      if (!debs.has(key)) debs.set(key, buildProbeDeb(path.join(workDir, "debs", key), name, version));
      return debs.get(key)!;
    };
    const states: ArchiveState[] = [];
    let mirrorState: ArchiveState = { date: secondsOf(new Date()), debs: [], packages: Buffer.alloc(0) };
    // One signed Release per state, suite and kind (the snapshot's carries a Valid-Until), made when first asked.
    const releases = new Map<string, Promise<Signed>>();
    const signedRelease = (state: ArchiveState, suite: string, snapshot: boolean) => {
      const key = `${snapshot ? "snapshot" : "mirror"} ${state.timestamp ?? "empty"} ${suite}`;
      if (!releases.has(key)) releases.set(key, signer.signRelease(releaseText(state, suite, snapshot)));
      return releases.get(key)!;
    };

    const answerTree = async (state: ArchiveState, rest: string, snapshot: boolean): Promise<Answer | undefined> => {
      if (rest.startsWith("pool/")) {
        const deb = state.debs.find((d) => d.filename === rest);
        return deb && { status: 200, body: deb.bytes, type: "application/vnd.debian.binary-package" };
      }
      const dists = /^dists\/([A-Za-z0-9._+-]+)\/(.+)$/.exec(rest);
      if (!dists) return undefined;
      const [, suite, file] = dists as unknown as [string, string, string];
      if (file === "Release" || file === "InRelease" || file === "Release.gpg") {
        const signed = await signedRelease(state, suite, snapshot);
        const body = { Release: signed.release, InRelease: signed.inRelease, "Release.gpg": signed.releaseGpg }[file];
        return { status: 200, body, type: "text/plain" };
      }
      const index = indexFiles(state, suite).find((f) => f.path === file);
      return index && { status: 200, body: index.body, type: "text/plain" };
    };

    const answer = async (target: string, host: string | undefined): Promise<Answer | undefined> => {
      const urlPath = decodeURIComponent(new URL(target, "http://stand-in").pathname);
      const mirror = /^\/mirror\/(.+)$/.exec(urlPath);
      if (mirror) return answerTree(mirrorState, mirror[1]!, false);
      const archive = /^\/archive\/([^/]+)\/([^/]+)\/(.+)$/.exec(urlPath);
      if (!archive) return undefined;
      const [, name, asked, rest] = archive as unknown as [string, string, string, string];
      if (!TIMESTAMP.test(asked)) return undefined;
      const exact = states.find((s) => s.timestamp === asked);
      if (exact) return answerTree(exact, rest, true);
      // As snapshot.debian.org: the newest state at or before the time asked (the format sorts as it reads).
      const before = states.findLast((s) => s.timestamp! <= asked);
      if (!before) return undefined;
      const location = `http://${host ?? new URL(url).host}/archive/${name}/${before.timestamp}/${rest}`;
      return { status: 301, body: Buffer.from(`Moved to ${location}\n`), type: "text/plain", location };
    };

    const log = createRequestLog();
    server = http.createServer((req, res) => {
      const entry = log.record(req.method, req.url);
      const asked =
        req.method === "GET" || req.method === "HEAD" ? answer(req.url ?? "/", req.headers.host) : undefined;
      Promise.resolve(asked)
        .then((found) => {
          entry.status = found?.status ?? 404;
          if (!found) {
            res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${req.url}\n`);
            return;
          }
          res.writeHead(found.status, {
            "content-type": found.type ?? "application/octet-stream",
            "content-length": found.body.length,
            ...(found.location ? { location: found.location } : {}),
          });
          res.end(req.method === "HEAD" ? undefined : found.body);
        })
        .catch((error: unknown) => {
          entry.status = 500;
          res.writeHead(500, { "content-type": "text/plain" }).end(`${String(error)}\n`);
        });
    });
    const url = await listenOnLoopback(server, port);

    // One publish at a time, so each waits for the one before it and the timestamps strictly increase.
    let publishing: Promise<unknown> = Promise.resolve();
    const publishNow = async (versions: Record<string, string>) => {
      for (const [name, version] of Object.entries(versions)) {
        if (!(PROBE_PACKAGES as readonly string[]).includes(name))
          throw new Error(`not a probe package: ${name} (the probes: ${PROBE_PACKAGES.join(", ")})`);
        if (!DEBIAN_VERSION.test(version)) throw new Error(`not a Debian version: ${name} ${version}`);
      }
      const built = await Promise.all(
        PROBE_PACKAGES.filter((n) => n in versions).map((n) => probeDeb(n, versions[n]!)),
      );
      const last = states.at(-1)?.date.getTime() ?? 0;
      while (Date.now() < last + 1000) await sleep(last + 1000 - Date.now());
      const date = secondsOf(new Date());
      const state: ArchiveState = {
        timestamp: snapshotTimestamp(date),
        date,
        debs: built,
        packages: packagesFile(built),
      };
      states.push(state);
      mirrorState = state;
      return state.timestamp!;
    };
    const publish = (versions: Record<string, string>) => {
      const published = publishing.then(() => publishNow(versions));
      publishing = published.catch(() => {});
      return published;
    };

    return {
      url,
      mirrorUrl: `${url}/mirror`,
      snapshotUrl: `${url}/archive`,
      keyring: signer.keyring,
      publish,
      requests: () => log.entries(),
      clearRequests: () => log.clear(),
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The test key, made in its own GNUPGHOME: its public keyring and a way to sign a Release with it. */
async function createSigner(gnupgHome: string) {
  await mkdir(gnupgHome, { mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: gnupgHome };
  const gpg = (...args: string[]) => runCommand("gpg", ["--batch", "--yes", ...args], { env, timeoutMs: 60_000 });
  await gpg("--passphrase", "", "--quick-gen-key", KEY_USER_ID, "ed25519", "sign", "never").catch(() =>
    gpg("--passphrase", "", "--quick-gen-key", KEY_USER_ID, "rsa3072", "sign", "never"),
  );
  const listed = await gpg("--with-colons", "--list-keys", KEY_USER_ID);
  const fingerprint = /^fpr:(?:[^:]*:){8}([0-9A-F]+):/m.exec(listed.stdout)?.[1];
  if (!fingerprint) throw new Error(`no fingerprint in gpg's listing of the new key:\n${listed.stdout}`);
  const keyringFile = path.join(gnupgHome, "keyring.gpg");
  await gpg("--output", keyringFile, "--export", fingerprint);
  let signatures = 0;
  return {
    keyring: await readFile(keyringFile),
    async signRelease(text: string): Promise<Signed> {
      const file = path.join(gnupgHome, `Release.${++signatures}`);
      await writeFile(file, text);
      const sign = (...how: string[]) =>
        gpg("--local-user", fingerprint, "--digest-algo", "SHA256", ...how, "--output", "-", file);
      const [inRelease, releaseGpg] = await Promise.all([sign("--clearsign"), sign("--detach-sign", "--armor")]);
      await rm(file);
      return {
        release: Buffer.from(text),
        inRelease: Buffer.from(inRelease.stdout),
        releaseGpg: Buffer.from(releaseGpg.stdout),
      };
    },
  };
}

/** A probe's control fields, as in its .deb and in a Packages stanza. */
function controlFields(name: string, version: string): string[] {
  return [
    `Package: ${name}`,
    `Version: ${version}`,
    "Architecture: all",
    `Maintainer: ${MAINTAINER}`,
    // An exact dependency, as curl's on libcurl: an old one needs the lib at its own old version.
    ...(name === "devvm-probe-one" ? [`Depends: devvm-probe-lib (= ${version})`] : []),
    "Section: misc",
    "Priority: optional",
    `Description: devvm test probe ${name}`,
    ` Installs /usr/share/devvm-probe/${name}, which holds its name and version.`,
  ];
}

/** Builds a probe's .deb in `dir` (removed after) and keeps its bytes. */
async function buildProbeDeb(dir: string, name: string, version: string): Promise<ProbeDeb> {
  const root = path.join(dir, "root");
  const dirs = ["DEBIAN", "usr", "usr/share", "usr/share/devvm-probe"];
  const files = {
    "DEBIAN/control": `${controlFields(name, version).join("\n")}\n`,
    [`usr/share/devvm-probe/${name}`]: `${name} ${version}\n`,
  };
  for (const d of dirs) await mkdir(path.join(root, d), { recursive: true });
  for (const [file, content] of Object.entries(files)) await writeFile(path.join(root, file), content);
  // The modes and times in the .deb are the files' own: fixed, whatever the umask and the clock.
  for (const entry of ["", ...dirs, ...Object.keys(files)]) {
    await chmod(path.join(root, entry), entry in files ? 0o644 : 0o755);
    await utimes(path.join(root, entry), DEB_EPOCH, DEB_EPOCH);
  }
  const out = path.join(dir, "probe.deb");
  await runCommand("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", root, out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(DEB_EPOCH) },
  });
  const bytes = await readFile(out);
  await rm(dir, { recursive: true, force: true });
  const fileVersion = version.replace(/^\d+:/, ""); // a .deb's file name drops the epoch
  const prefix = name.startsWith("lib") ? name.slice(0, 4) : name[0];
  return { name, version, filename: `pool/main/${prefix}/${name}/${name}_${fileVersion}_all.deb`, bytes };
}

/** The Packages of a release suite's `main`: each .deb's control fields, where it is, its size and hashes. */
function packagesFile(debs: ProbeDeb[]): Buffer {
  const stanzas = debs.map((deb) =>
    [
      ...controlFields(deb.name, deb.version),
      `Filename: ${deb.filename}`,
      `Size: ${deb.bytes.length}`,
      `MD5sum: ${hash("md5", deb.bytes)}`,
      `SHA256: ${hash("sha256", deb.bytes)}`,
      "",
    ].join("\n"),
  );
  return Buffer.from(stanzas.join("\n"));
}

/** The index files a suite's Release lists: the probes in `main` of a suite without a `-`, empty Packages otherwise. */
function indexFiles(state: ArchiveState, suite: string): Array<{ path: string; body: Buffer }> {
  return COMPONENTS.flatMap((component) =>
    ARCHITECTURES.map((arch) => ({
      path: `${component}/binary-${arch}/Packages`,
      body: component === "main" && !suite.includes("-") ? state.packages : Buffer.alloc(0),
    })),
  );
}

function releaseText(state: ArchiveState, suite: string, snapshot: boolean): string {
  const files = indexFiles(state, suite);
  const listed = (algorithm: string) => files.map((f) => ` ${hash(algorithm, f.body)} ${f.body.length} ${f.path}`);
  return [
    "Origin: devvm-stand-in",
    "Label: devvm-stand-in",
    `Suite: ${suite}`,
    `Codename: ${suite}`,
    `Date: ${releaseDate(state.date)}`,
    // The real snapshot's Release files expire (a day or a week after their Date), which is why apt needs
    // check-valid-until=no for it. One second after the Date makes every state but one just published
    // expired, so a test sees apt refuse it without that option without waiting a day.
    ...(snapshot ? [`Valid-Until: ${releaseDate(new Date(state.date.getTime() + 1000))}`] : []),
    `Architectures: ${ARCHITECTURES.join(" ")}`,
    `Components: ${COMPONENTS.join(" ")}`,
    "Description: devvm test stand-in",
    // As Debian's: the binary-amd64 Packages hold the `all` packages too, so apt reads no binary-all.
    "No-Support-for-Architecture-all: Packages",
    "MD5Sum:",
    ...listed("md5"),
    "SHA256:",
    ...listed("sha256"),
    "",
  ].join("\n");
}

function hash(algorithm: string, bytes: Buffer): string {
  return createHash(algorithm).update(bytes).digest("hex");
}

function secondsOf(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/** As Debian writes a Release's Date: `Thu, 03 Dec 2026 10:15:00 UTC`. */
function releaseDate(date: Date): string {
  return date.toUTCString().replace(/GMT$/, "UTC");
}

/** As snapshot.debian.org names a time: `20261203T101500Z`. */
function snapshotTimestamp(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}
