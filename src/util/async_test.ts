import assert from "node:assert/strict";
import { delay, mapLimit, Semaphore } from "./async.ts";

Deno.test("delay: an abort ends it at once", async () => {
  const c = new AbortController();
  const started = Date.now();
  const p = delay(60_000, c.signal);
  c.abort();
  await p;
  assert.ok(Date.now() - started < 5_000);
  await delay(1);
});

Deno.test("Semaphore: never more holders than the limit; releases hand over in order; double release is harmless", async () => {
  const s = new Semaphore(2);
  const r1 = await s.acquire();
  const r2 = await s.acquire();
  const order: number[] = [];
  const w3 = s.acquire().then((r) => (order.push(3), r));
  const w4 = s.acquire().then((r) => (order.push(4), r));
  assert.equal(s.active, 2);
  r1();
  r1();
  const r3 = await w3;
  assert.equal(s.active, 2);
  r2();
  const r4 = await w4;
  assert.deepEqual(order, [3, 4]);
  r3();
  r4();
  assert.equal(s.active, 0);
  const unlimited = new Semaphore(0);
  await Promise.all([unlimited.acquire(), unlimited.acquire(), unlimited.acquire()]);
  assert.equal(unlimited.active, 3);
});

Deno.test("mapLimit: every item once, at most `limit` at a time; the first failure rejects", async () => {
  let running = 0;
  let peak = 0;
  const seen: number[] = [];
  await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (x) => {
    running++;
    peak = Math.max(peak, running);
    await delay(1);
    seen.push(x);
    running--;
  });
  assert.deepEqual(seen.sort(), [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(peak, 3);
  await mapLimit([], 4, () => Promise.reject(new Error("never called")));
  await assert.rejects(
    mapLimit([1, 2, 3], 2, (x) => x === 2 ? Promise.reject(new Error("two")) : Promise.resolve()),
    /two/,
  );
});
