import { describe, expect, it } from "vitest";
import { Background, JobKind, takeOrRun } from "./background.ts";

const quiet = { info: () => {}, debug: () => {} };
const later = <T>(value: T, ms = 20) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));
const STRING = new JobKind<string>((id) => `job ${id}`);
const MAYBE = new JobKind<string | null>((id) => `job ${id}`);
const NOTHING = new JobKind<void>((id) => `job ${id}`);

describe("Background", () => {
  it("starts a job once, hands it to one apply, and discards only what nothing took", async () => {
    const background = new Background();
    let runs = 0;
    const discarded: string[] = [];
    const discard = async (made: string) => void discarded.push(made);
    background.job(STRING, "a").start(async () => `a${++runs}`, { log: quiet, discard });
    background.job(STRING, "a").start(async () => `a${++runs}`, { log: quiet, discard });
    background.job(STRING, "b").start(() => later("b"), { log: quiet, discard });
    expect(await background.job(STRING, "a").take()).toBe("a1");
    expect(background.job(STRING, "a").take()).toBeUndefined();
    await background.settle(quiet);
    expect(runs).toBe(1);
    expect(discarded).toEqual(["b"]);
  });

  it("aborts its signal at the end, so a command of unfinished work ends", async () => {
    const background = new Background();
    const seen: boolean[] = [];
    background
      .job(NOTHING, "slow")
      .start(() => new Promise<void>((resolve) => background.signal.addEventListener("abort", () => resolve())), {
        log: quiet,
      });
    seen.push(background.signal.aborted);
    await background.settle(quiet);
    seen.push(background.signal.aborted);
    expect(seen).toEqual([false, true]);
  });

  it("waits for the jobs that use what another prepared before it is moved", async () => {
    const background = new Background();
    const order: string[] = [];
    const tree = background.job(STRING, "tree");
    tree.start(async () => "staged", { log: quiet });
    tree.use(later("install", 30).then((v) => void order.push(v)));
    await tree.unused().then(() => order.push("move"));
    expect(order).toEqual(["install", "move"]);
  });

  it("gives what a job prepared to one that asks before it starts, whatever the order of the preparations", async () => {
    const background = new Background();
    const asked = background.job(STRING, "tree").prepared();
    background.job(STRING, "tree").start(async () => "staged", { log: quiet });
    expect(await asked).toBe("staged");
  });

  it("once sealed, says a job nobody started prepared nothing, and refuses to start one", async () => {
    const background = new Background();
    const asked = background.job(STRING, "tree").prepared();
    background.seal();
    expect(await asked).toBeUndefined();
    expect(await background.job(STRING, "other").prepared()).toBeUndefined();
    expect(() => background.job(STRING, "late").start(async () => "late", { log: quiet })).toThrow(
      "job late started after the stages' preparations",
    );
  });

  it("removes nothing of a job whose work failed, says so under --debug, and gives other jobs nothing of it", async () => {
    const background = new Background();
    const discarded: unknown[] = [];
    const debug: string[] = [];
    background.job(STRING, "broken").start(() => Promise.reject(new Error("registry down")), {
      log: { info: () => {}, debug: (m) => debug.push(m) },
      discard: async (v) => void discarded.push(v),
    });
    expect(await background.job(STRING, "broken").prepared()).toBeUndefined();
    await background.settle(quiet);
    expect(discarded).toEqual([]);
    expect(debug).toEqual(["preparing failed: registry down"]);
  });
});

describe("takeOrRun", () => {
  it("takes the prepared value, without running the work again", async () => {
    const background = new Background();
    background.job(MAYBE, "job").start(async () => "prepared", { log: quiet });
    expect(await takeOrRun(background.job(MAYBE, "job"), quiet, async () => "now")).toBe("prepared");
  });

  it("runs the work when nothing was prepared: no background, no job, or a job that found nothing to do", async () => {
    const background = new Background();
    background.job(MAYBE, "nothing").start(async () => null, { log: quiet });
    expect(await takeOrRun(undefined, quiet, async () => "now")).toBe("now");
    expect(await takeOrRun(background.job(MAYBE, "job"), quiet, async () => "now")).toBe("now");
    expect(await takeOrRun(background.job(MAYBE, "nothing"), quiet, async () => "now")).toBe("now");
  });

  it("tries once more after a failure in the background, so the apply reports its own error", async () => {
    const background = new Background();
    const debug: string[] = [];
    background.job(MAYBE, "job").start(() => Promise.reject(new Error("ECONNRESET")), { log: quiet });
    await expect(
      takeOrRun(background.job(MAYBE, "job"), { info: () => {}, debug: (m) => debug.push(m) }, () =>
        Promise.reject(new Error("integrity differs")),
      ),
    ).rejects.toThrow("integrity differs");
    expect(debug).toEqual(["job job failed in the background (ECONNRESET); trying again"]);
  });
});
