// A build's background work: what a stage prepares while earlier stages run
// (apt's minutes), handed over to that stage's apply when its turn comes.
// Prepared work is never live: a download in the cache, an install in a
// staging folder. Only the stage's apply makes it live (a rename, a link
// switch), so the pipeline's order, each stage's report and each install's
// atomicity are those of a build without background work.
//
// When the build ends, what no apply took (a stage after a failure does not
// run) is stopped and removed: nothing prepared outlives the build.
import type { Logger } from "./context.ts";

interface Job {
  promise: Promise<unknown>;
  discard?: (value: unknown) => Promise<void>;
  taken: boolean;
  /** Jobs that use what this one prepared (the npm installs run the staged Node). */
  users: Array<Promise<unknown>>;
}

export class Background {
  private readonly jobs = new Map<string, Job>();
  private readonly controller = new AbortController();

  /** Aborted when the build ends: a command of unfinished work ends then (RunOptions.signal). */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * Starts `work` under `key` unless it runs already; `discard` removes what
   * it made when no apply takes it. A failure waits for the apply, which
   * reports it (or tries again).
   */
  start<T>(key: string, work: () => Promise<T>, discard?: (value: T) => Promise<void>): Promise<T> {
    const running = this.jobs.get(key);
    if (running) return running.promise as Promise<T>;
    const promise = work();
    promise.catch(() => {}); // reported by the apply that takes it
    this.jobs.set(key, {
      promise,
      ...(discard ? { discard: discard as Job["discard"] } : {}),
      taken: false,
      users: [],
    });
    return promise;
  }

  /** What `start` began under `key`, for another job to use; `peek` does not take it. */
  peek<T>(key: string): Promise<T> | undefined {
    return this.jobs.get(key)?.promise as Promise<T> | undefined;
  }

  /** Records that `use` works with what `key` prepared: `unused(key)` waits for it. */
  use<T>(key: string, use: Promise<T>): Promise<T> {
    this.jobs.get(key)?.users.push(use.catch(() => {}));
    return use;
  }

  /** Waits until no job uses what `key` prepared (before it is moved into place). */
  async unused(key: string): Promise<void> {
    await Promise.all(this.jobs.get(key)?.users ?? []);
  }

  /** Hands the work under `key` to the apply, which from now on owns what it made. */
  take<T>(key: string): Promise<T> | undefined {
    const job = this.jobs.get(key);
    if (!job || job.taken) return undefined;
    job.taken = true;
    return job.promise as Promise<T>;
  }

  /** At the build's end: stops unfinished work, waits for it, and removes what nothing took. */
  async settle(log: Logger): Promise<void> {
    this.controller.abort();
    for (const [key, job] of this.jobs) {
      const outcome = await job.promise.then(
        (value) => ({ value }),
        () => undefined,
      );
      if (job.taken || !outcome || !job.discard) continue;
      await job
        .discard(outcome.value)
        .catch((error: unknown) =>
          log.info(`warning: could not remove what ${key} prepared: ${(error as Error).message}`),
        );
      log.debug(`removed what ${key} prepared: its stage did not run`);
    }
  }
}

/**
 * What the background job under `key` prepared, or the apply's own attempt:
 * when none was started, when it found nothing to prepare (null), or when it
 * failed (tried again once, so that the apply reports the failure).
 */
export async function takeOrRun<T>(
  background: Background | undefined,
  key: string,
  log: Logger,
  work: () => Promise<T>,
): Promise<T> {
  const prepared = background?.take<T | null>(key);
  if (!prepared) return work();
  try {
    return (await prepared) ?? (await work());
  } catch (error) {
    log.debug(`${key} failed in the background (${(error as Error).message}); trying again`);
    return work();
  }
}
