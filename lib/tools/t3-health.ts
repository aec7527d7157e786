// Is a t3 install fit to serve users? docs/devvm.md stage 5: a nightly once
// renamed the pairing endpoint and pairing broke for every user, so a new
// version is tried on a throwaway port and folder before it is trusted:
// its version, `t3 serve` answering GET / with 200, a pairing credential,
// and a browser session (a t3_session cookie) made from that credential.
import { spawn, type ChildProcess } from "node:child_process";
import { trackChild, untrackChild } from "../machine/children.ts";
import { LEFTOVERS, removeLeftovers, scratchPrefix } from "../machine/leftovers.ts";
import { chown, lchown, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fetch } from "undici";
import type { BuildContext } from "../core/context.ts";
import { CommandError, tail } from "../core/errors.ts";
import { run, setprivAs } from "../machine/exec.ts";

export interface T3HealthOptions {
  /** The t3 command under test (the new prefix's bin/t3, not whatever PATH finds). */
  t3: string;
  expectedVersion: string;
  /** For t3's processes: PATH with the pinned Node first. */
  env?: Record<string, string>;
  /** How long `t3 serve` may take to answer GET / with 200; default 20 s. */
  readyTimeoutMs?: number;
  /**
   * A populated state.sqlite to run on, copied in as userdata/state.sqlite:
   * an empty database cannot show a migration that fails on a real one.
   * Called with the folder's path; it writes the copy there.
   */
  copyDatabase?: (userdata: string) => Promise<void>;
  /**
   * The account t3 runs as, as production runs it: the owner of the
   * database copied in (a crafted database then reaches no more than its
   * owner has). Its environment is then only `env`, NODE_ENV and HOME (the
   * throwaway folder): never the builder's own, which may hold a Vault
   * token. Default: the builder's account and environment.
   */
  runAs?: { uid: number; gid: number };
}

export type T3Health =
  | { healthy: true }
  | {
      healthy: false;
      check: "version" | "serve" | "pairing credential" | "browser session" | "migration";
      saw: string;
    };

/** What t3 logs when a migration of state.sqlite failed (docs/devvm.md, "t3 stays up"). */
export const MIGRATION_ERRORS =
  /migration failed|failed to migrate|no column named|NOT NULL constraint failed|PersistenceSqlError/i;

// The route the session is made on; older versions only have the second.
const SESSION_ROUTES = ["/api/auth/browser-session", "/api/auth/bootstrap"];
const COMMAND_TIMEOUT_MS = 30_000;

export async function checkT3Health(ctx: Pick<BuildContext, "log">, options: T3HealthOptions): Promise<T3Health> {
  const env = options.env ?? {};
  const version = await checkVersion(ctx, options.t3, options.expectedVersion, env);
  if (version) return version;
  await removeLeftovers(ctx, tmpdir(), LEFTOVERS.t3Health);
  const baseDir = await mkdtemp(path.join(tmpdir(), scratchPrefix("devvm-t3-health-")));
  let server: Server | undefined;
  try {
    if (options.copyDatabase) {
      await mkdir(path.join(baseDir, "userdata"), { mode: 0o700 });
      await options.copyDatabase(path.join(baseDir, "userdata"));
    }
    // Made and filled by the builder, then handed over whole: nobody else had it before.
    if (options.runAs) await handOver(baseDir, options.runAs);
    const as = asAccount(options.runAs, baseDir, env);
    // As production runs it (t3-serve@.service): the same flags, NODE_ENV=production.
    const port = await freePort();
    server = startServer(options.t3, port, baseDir, { NODE_ENV: "production", ...env }, as);
    const origin = `http://127.0.0.1:${port}`;
    const notReady = await waitForRoot(origin, server, options.readyTimeoutMs ?? 20_000);
    // Its output is in the answer already.
    if (notReady) return notReady;
    const credential = await createCredential(ctx, options.t3, baseDir, env, as);
    if (typeof credential !== "string") return migrationFailure(server) ?? credential;
    const session = await createSession(origin, credential);
    return migrationFailure(server) ?? session;
  } finally {
    if (server) {
      await stopServer(server);
      ctx.log.debug(`t3 serve's output:\n${tail(server.output(), 20)}`);
    }
    await rm(baseDir, { recursive: true, force: true });
  }
}

/** The first line of t3 serve's output that says a migration failed, as a result; null when none does. */
function migrationFailure(server: Server): T3Health | null {
  const line = server.migrationError();
  return line === null
    ? null
    : {
        healthy: false,
        check: "migration",
        saw: `\`t3 serve\` on a copy of a populated state.sqlite logged: ${line.trim().slice(0, 300)}`,
      };
}

/** `t3 --version` prints the version as its last word, maybe with a v. */
async function checkVersion(
  ctx: Pick<BuildContext, "log">,
  t3: string,
  expected: string,
  env: Record<string, string>,
): Promise<T3Health | null> {
  try {
    const { stdout } = await run(ctx, t3, ["--version"], { env, timeoutMs: COMMAND_TIMEOUT_MS });
    const printed = stdout.trim().split(/\s+/).pop()?.replace(/^v/, "") ?? "";
    return printed === expected
      ? null
      : { healthy: false, check: "version", saw: `\`t3 --version\` printed "${stdout.trim()}", expected ${expected}` };
  } catch (error) {
    return { healthy: false, check: "version", saw: failureText(error) };
  }
}

interface Server {
  process: ChildProcess;
  output(): string;
  /** How it ended ("exited with 1", "spawn ... ENOENT"), or null while it runs. */
  ended(): string | null;
  migrationError(): string | null;
}

/** The setpriv arguments (after --pdeathsig) and the clean environment that run t3 as `account`; none without one. */
function asAccount(
  account: { uid: number; gid: number } | undefined,
  baseDir: string,
  env: Record<string, string>,
): string[] {
  return account ? setprivAs(account, { ...env, NODE_ENV: "production", HOME: baseDir }) : [];
}

async function handOver(dir: string, { uid, gid }: { uid: number; gid: number }): Promise<void> {
  await chown(dir, uid, gid);
  for (const entry of await readdir(dir, { recursive: true })) await lchown(path.join(dir, entry), uid, gid);
}

function startServer(t3: string, port: number, baseDir: string, env: Record<string, string>, as: string[]): Server {
  // Its own process group, so stopping it also stops whatever it started,
  // recorded, so a build killed meanwhile has it ended by the next one; and
  // killed by the kernel the moment the builder dies (setpriv --pdeathsig):
  // a server that never ends by itself must not outlive its check.
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      ...(as.length > 0 ? as : ["--"]),
      t3,
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--base-dir",
      baseDir,
    ],
    {
      env: { ...process.env, ...env },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  trackChild(child.pid);
  let output = "";
  // The first line that says a migration failed, however much is printed after it.
  let partial = "";
  let migrationError: string | null = null;
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8192);
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop()!.slice(-4096);
    migrationError ??= lines.find((l) => MIGRATION_ERRORS.test(l)) ?? null;
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let ended: string | null = null;
  child.on("error", (error) => (ended ??= error.message));
  child.on("exit", (code, signal) => (ended ??= `exited with ${code ?? signal}`));
  return {
    process: child,
    output: () => output,
    ended: () => ended,
    migrationError: () => migrationError ?? (MIGRATION_ERRORS.test(partial) ? partial : null),
  };
}

async function waitForRoot(origin: string, server: Server, timeoutMs: number): Promise<T3Health | null> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    const ended = server.ended();
    if (ended) {
      const output = tail(server.output(), 8);
      return {
        healthy: false,
        check: "serve",
        saw: `\`t3 serve\` ${ended} before answering GET /${output ? `:\n${output}` : ""}`,
      };
    }
    try {
      const response = await fetch(`${origin}/`, { redirect: "manual", signal: AbortSignal.timeout(2000) });
      await response.body?.cancel();
      if (response.status === 200) return null;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
    }
    await sleep(200);
  }
  return {
    healthy: false,
    check: "serve",
    saw: `GET / did not answer 200 within ${Math.round(timeoutMs / 1000)} s (last: ${last})`,
  };
}

async function createCredential(
  ctx: Pick<BuildContext, "log">,
  t3: string,
  baseDir: string,
  env: Record<string, string>,
  as: string[],
): Promise<string | T3Health> {
  let stdout: string;
  const create = [t3, "auth", "pairing", "create", "--base-dir", baseDir, "--ttl", "5m", "--json"];
  try {
    ({ stdout } = await (as.length > 0
      ? run(ctx, "setpriv", [...as, ...create], { timeoutMs: COMMAND_TIMEOUT_MS, cwd: "/" })
      : run(ctx, create[0]!, create.slice(1), { env, timeoutMs: COMMAND_TIMEOUT_MS })));
  } catch (error) {
    return { healthy: false, check: "pairing credential", saw: failureText(error) };
  }
  try {
    const credential = (JSON.parse(stdout) as { credential?: unknown }).credential;
    if (typeof credential === "string" && credential !== "") return credential;
  } catch {
    // reported below
  }
  // The output is not shown: it may hold a credential in another shape.
  return {
    healthy: false,
    check: "pairing credential",
    saw: `\`t3 auth pairing create --json\` printed no JSON with a "credential" string (${stdout.length} bytes)`,
  };
}

async function createSession(origin: string, credential: string): Promise<T3Health> {
  const tried: string[] = [];
  for (const route of SESSION_ROUTES) {
    let response;
    try {
      response = await fetch(`${origin}${route}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ credential }),
        redirect: "manual",
        signal: AbortSignal.timeout(10_000),
      });
      await response.body?.cancel();
    } catch (error) {
      tried.push(
        `POST ${route} failed (${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message})`,
      );
      break;
    }
    const cookies = response.headers.getSetCookie();
    // t3 names it t3_session_<port>_<hash> on some bindings: a check that wanted
    // exactly t3_session rolled back every update for 17 days (docs/devvm.md).
    if (cookies.some((c) => /^t3_session[^=;]*=/.test(c))) return { healthy: true };
    tried.push(
      `POST ${route} answered ${response.status}${cookies.length ? ` with cookies ${cookies.map((c) => c.split("=")[0]).join(", ")}` : ""}`,
    );
    // Only a missing route sends us on to the older one.
    if (response.status !== 404) break;
  }
  return { healthy: false, check: "browser session", saw: `${tried.join(", then ")}; no t3_session cookie` };
}

async function stopServer(server: Server): Promise<void> {
  const child = server.process;
  if (child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group is gone already.
    }
  };
  signalGroup("SIGTERM");
  const stopped = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
  // Also after the leader exited: a child it left behind is still in the group.
  signalGroup("SIGKILL");
  if (!stopped) await exited;
  untrackChild(child.pid);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function failureText(error: unknown): string {
  return error instanceof CommandError ? error.message : (error as Error).message;
}
