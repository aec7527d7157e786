// A build's background work: what a stage prepares while earlier stages run
// (apt's minutes), handed over to that stage's apply when its turn comes.
// Prepared work is never live: a download in the cache, an install in a
// staging folder. Only the stage's apply makes it live (a rename, a link
// switch), so the pipeline's order, each stage's report and each install's
// atomicity are those of a build without background work.
//
// Work is found by a typed handle, not by a name two files spell alike: a
// JobKind declared once beside its work says what the work yields, and
// `background.job(kind, id)` is the one job of that kind and id in the build,
// whoever asks first (the stage that starts it, the stage that uses it, the
// apply that takes it). Every job starts while the stages' prepare run (they
// are synchronous); after that the runner seals the build's background, so a
// job nobody started is known never to start, and what waits for it goes on.
//
// When the build ends, what no apply took (a stage after a failure does not
// run) is stopped and removed: nothing prepared outlives the build.
import type { Logger } from "./context.ts";
import { BugError } from "./errors.ts";

/** A kind of background work, declared once beside its work: what it yields (`T`), and its name in messages. */
export class JobKind<T> {
  /** Only for the type checker: a job of this kind yields a T. */
  declare private readonly yields: (value: T) => T;

  constructor(readonly describe: (id: string) => string) {}
}

interface Started<T> {
  promise: Promise<T>;
  discard?: (value: T) => Promise<void>;
}

/** One job of the build: started by one stage's prepare, maybe used by another's, taken by its apply. */
export class Job<T> {
  private started: Started<T> | undefined;
  private taken = false;
  /** Jobs that use what this one prepared (the npm installs run the staged Node). */
  private readonly users: Array<Promise<unknown>> = [];
  private readonly known: Promise<Started<T> | undefined>;
  private settleKnown!: (started: Started<T> | undefined) => void;

  constructor(
    readonly name: string,
    private readonly isSealed: () => boolean,
  ) {
    this.known = new Promise((resolve) => (this.settleKnown = resolve));
  }

  /**
   * Starts `work` unless it runs already; `discard` removes what it made
   * when no apply takes it. A failure is said under --debug and waits for
   * the apply, which reports it (or tries again).
   */
  start(work: () => Promise<T>, options: { log: Logger; discard?: (value: T) => Promise<void> }): void {
    if (this.started) return;
    if (this.isSealed()) throw new BugError(`${this.name} started after the stages' preparations`);
    const promise = work();
    promise.catch((error: unknown) => options.log.debug(`preparing failed: ${(error as Error).message}`));
    this.started = { promise, ...(options.discard ? { discard: options.discard } : {}) };
    this.settleKnown(this.started);
  }

  /** The build's preparations are over: a job not started by now never starts. */
  seal(): void {
    if (!this.started) this.settleKnown(undefined);
  }

  /**
   * What it prepared, for another job to use (not taking it): undefined when
   * no stage started it, or when it failed (its own stage says why).
   */
  async prepared(): Promise<T | undefined> {
    const started = await this.known;
    return started?.promise.catch(() => undefined);
  }

  /** Records that `use` works with what this job prepared: `unused()` waits for it. */
  use<U>(use: Promise<U>): Promise<U> {
    this.users.push(use.catch(() => {}));
    return use;
  }

  /** Waits until no job uses what this one prepared (before it is moved into place). */
  async unused(): Promise<void> {
    await Promise.all(this.users);
  }

  /** Hands the work to the apply, which from now on owns what it made; undefined when not started or taken already. */
  take(): Promise<T> | undefined {
    if (!this.started || this.taken) return undefined;
    this.taken = true;
    return this.started.promise;
  }

  /** At the build's end: waits for the work, and removes what it made when nothing took it. */
  async settle(log: Logger): Promise<void> {
    this.seal();
    if (!this.started) return;
    const outcome = await this.started.promise.then(
      (value) => ({ value }),
      () => undefined,
    );
    if (this.taken || !outcome || !this.started.discard) return;
    await this.started
      .discard(outcome.value)
      .catch((error: unknown) =>
        log.info(`warning: could not remove what ${this.name} prepared: ${(error as Error).message}`),
      );
    log.debug(`removed what ${this.name} prepared: its stage did not run`);
  }
}

export class Background {
  // Keyed by the kind itself (its identity), then the id.
  // Each kind's jobs are of its own type (see job()); the others need only seal and settle.
  private readonly jobs = new Map<object, Map<string, Pick<Job<unknown>, "seal" | "settle">>>();
  private readonly controller = new AbortController();
  private sealed = false;

  /** Aborted when the build ends: a command of unfinished work ends then (RunOptions.signal). */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The build's job of this kind and id, made on the first ask. */
  job<T>(kind: JobKind<T>, id: string): Job<T> {
    const ofKind = this.jobs.get(kind) ?? new Map<string, Pick<Job<unknown>, "seal" | "settle">>();
    this.jobs.set(kind, ofKind);
    let job = ofKind.get(id) as Job<T> | undefined;
    if (!job) {
      job = new Job<T>(kind.describe(id), () => this.sealed);
      if (this.sealed) job.seal();
      ofKind.set(id, job);
    }
    return job;
  }

  /** Called by the runner once every stage's prepare ran: what waits for a job nobody started goes on. */
  seal(): void {
    this.sealed = true;
    for (const ofKind of this.jobs.values()) for (const job of ofKind.values()) job.seal();
  }

  /** At the build's end: stops unfinished work, waits for it, and removes what nothing took. */
  async settle(log: Logger): Promise<void> {
    this.controller.abort();
    this.seal();
    for (const ofKind of this.jobs.values()) for (const job of ofKind.values()) await job.settle(log);
  }
}

/**
 * What the background job prepared, or the apply's own attempt: when none
 * was started, when it found nothing to prepare (null), or when it failed
 * (tried again once, so that the apply reports the failure).
 */
export async function takeOrRun<T>(job: Job<T | null> | undefined, log: Logger, work: () => Promise<T>): Promise<T> {
  const prepared = job?.take();
  if (!prepared) return work();
  try {
    return (await prepared) ?? (await work());
  } catch (error) {
    log.debug(`${job!.name} failed in the background (${(error as Error).message}); trying again`);
    return work();
  }
}
