import { describe, expect, it } from "vitest";
import { Background, takeOrRun } from "./background.ts";

const quiet = { info: () => {}, debug: () => {} };
const later = <T>(value: T, ms = 20) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));

describe("Background", () => {
  it("starts a job once, hands it to one apply, and discards only what nothing took", async () => {
    const background = new Background();
    let runs = 0;
    const discarded: string[] = [];
    const discard = async (made: string) => void discarded.push(made);
    background.start("a", async () => `a${++runs}`, discard);
    background.start("a", async () => `a${++runs}`, discard);
    background.start("b", () => later("b"), discard);
    expect(await background.take("a")).toBe("a1");
    expect(background.take("a")).toBeUndefined();
    await background.settle(quiet);
    expect(runs).toBe(1);
    expect(discarded).toEqual(["b"]);
  });

  it("aborts its signal at the end, so a command of unfinished work ends", async () => {
    const background = new Background();
    const seen: boolean[] = [];
    background.start(
      "slow",
      () => new Promise<void>((resolve) => background.signal.addEventListener("abort", () => resolve())),
    );
    seen.push(background.signal.aborted);
    await background.settle(quiet);
    seen.push(background.signal.aborted);
    expect(seen).toEqual([false, true]);
  });

  it("waits for the jobs that use what another prepared before it is moved", async () => {
    const background = new Background();
    const order: string[] = [];
    background.start("tree", async () => "staged");
    background.use(
      "tree",
      later("install", 30).then((v) => void order.push(v)),
    );
    await background.unused("tree").then(() => order.push("move"));
    expect(order).toEqual(["install", "move"]);
  });

  it("removes nothing of a job whose work failed, and says nothing of it", async () => {
    const background = new Background();
    const discarded: unknown[] = [];
    background.start(
      "broken",
      () => Promise.reject(new Error("registry down")),
      async (v) => void discarded.push(v),
    );
    await background.settle(quiet);
    expect(discarded).toEqual([]);
  });
});

describe("takeOrRun", () => {
  it("takes the prepared value, without running the work again", async () => {
    const background = new Background();
    background.start("job", async () => "prepared");
    expect(await takeOrRun(background, "job", quiet, async () => "now")).toBe("prepared");
  });

  it("runs the work when nothing was prepared: no background, no job, or a job that found nothing to do", async () => {
    const background = new Background();
    background.start("nothing", async () => null);
    expect(await takeOrRun(undefined, "job", quiet, async () => "now")).toBe("now");
    expect(await takeOrRun(background, "job", quiet, async () => "now")).toBe("now");
    expect(await takeOrRun(background, "nothing", quiet, async () => "now")).toBe("now");
  });

  it("tries once more after a failure in the background, so the apply reports its own error", async () => {
    const background = new Background();
    const debug: string[] = [];
    background.start("job", () => Promise.reject(new Error("ECONNRESET")));
    await expect(
      takeOrRun(background, "job", { info: () => {}, debug: (m) => debug.push(m) }, () =>
        Promise.reject(new Error("integrity differs")),
      ),
    ).rejects.toThrow("integrity differs");
    expect(debug).toEqual(["job failed in the background (ECONNRESET); trying again"]);
  });
});
