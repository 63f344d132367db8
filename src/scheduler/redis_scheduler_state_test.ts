import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startRedis } from "../../tests/fixtures/backends.ts";
import { waitUntil } from "../../tests/fixtures/wait.ts";
import { Code } from "../util/error.ts";
import { RedisSchedulerState } from "./redis_scheduler_state.ts";

/** Two replicas' views of one state (separate connections), and a raw client to look at the keys. */
async function withReplicas(
  fn: (a: RedisSchedulerState, b: RedisSchedulerState, raw: Redis, prefix: string) => Promise<void>,
): Promise<void> {
  const redis = await startRedis();
  const prefix = `t/${crypto.randomUUID()}/`;
  const a = new RedisSchedulerState(new Redis(redis.url, { lazyConnect: true }), prefix);
  const b = new RedisSchedulerState(new Redis(redis.url, { lazyConnect: true }), prefix);
  const raw = new Redis(redis.url);
  try {
    await fn(a, b, raw, prefix);
  } finally {
    await a.close();
    await b.close();
    raw.disconnect();
    await redis.stop();
  }
}

const add = (s: RedisSchedulerState, op: string, key = "") =>
  s.add({ op, id: op, key, req: "{}", prio: 0, now: Date.now() });

Deno.test("RedisSchedulerState merges an in-flight action across replicas and refuses a taken operation name", async () => {
  await withReplicas(async (a, b) => {
    assert.deepEqual(await add(a, "op1", "k"), { id: "op1", merged: false });
    assert.deepEqual(await add(b, "op2", "k"), { id: "op1", merged: true });
    assert.deepEqual((await a.clientsOf("op1")).sort(), ["op1", "op2"]);
    assert.deepEqual(await add(b, "op3", ""), { id: "op3", merged: false }); // do_not_cache: never merged
    assert.equal((await add(b, "op1", "other")).id, "");
    // Once done, the key is free: the same action runs again.
    assert.equal(await a.claim("op1", "w", 10_000), true);
    assert.equal(await a.complete("op1", "w", "", 60_000), true);
    assert.deepEqual(await add(b, "op4", "k"), { id: "op4", merged: false });
  });
});

Deno.test("RedisSchedulerState gives a queued action to exactly one of two racing replicas", async () => {
  await withReplicas(async (a, b) => {
    for (let i = 0; i < 20; i++) {
      await add(a, `op${i}`);
      const wins = await Promise.all([a.claim(`op${i}`, "wa", 10_000), b.claim(`op${i}`, "wb", 10_000)]);
      assert.equal(wins.filter(Boolean).length, 1, `op${i}: ${wins}`);
    }
    assert.deepEqual(await a.queued(100), []);
  });
});

Deno.test("RedisSchedulerState keeps the queue in priority order, then age", async () => {
  await withReplicas(async (a) => {
    await a.add({ op: "low", id: "low", key: "", req: "{}", prio: -5, now: 1 });
    await a.add({ op: "old", id: "old", key: "", req: "{}", prio: 0, now: 2 });
    await a.add({ op: "new", id: "new", key: "", req: "{}", prio: 0, now: 3 });
    await a.add({ op: "high", id: "high", key: "", req: "{}", prio: 2_000_000_000, now: 4 });
    assert.deepEqual(await a.queued(10), ["high", "old", "new", "low"]);
  });
});

Deno.test("RedisSchedulerState fences results by worker and re-adopts only for the previous holder", async () => {
  await withReplicas(async (a, b) => {
    await add(a, "op");
    assert.equal(await a.claim("op", "w1", 10_000), true);
    assert.equal(await b.complete("op", "w2", "", 60_000), false);
    // w1 reconnects to replica b as w1b; someone claiming to be w9 cannot take the action.
    assert.equal(await b.adopt("op", "w9", "w9b", 10_000), false);
    assert.equal(await b.adopt("op", "w1", "w1b", 10_000), true);
    assert.equal(await a.complete("op", "w1", "", 60_000), false);
    assert.deepEqual(await b.renew("w1", ["op"], 10_000), ["op"]);
    assert.deepEqual(await b.renew("w1b", ["op"], 10_000), []);
    assert.equal(await b.complete("op", "w1b", "", 60_000), true);
    assert.equal((await a.action("op"))?.stage, "d");
  });
});

Deno.test("RedisSchedulerState requeues a leaseless action once its lease expires, then fails it after max retries", async () => {
  await withReplicas(async (a, b, raw, prefix) => {
    await add(a, "op");
    assert.equal(await a.claim("op", "w1", 50), true);
    assert.equal(await b.requeue("op", "", true, 1, "fail", 60_000), 0); // lease alive
    await waitUntil(async () => (await raw.exists(`${prefix}l/op`)) === 0, { what: "the lease to expire" });
    assert.deepEqual(await b.leaseless(), ["op"]);
    assert.equal(await b.requeue("op", "", true, 1, "fail", 60_000), 1);
    assert.equal((await a.action("op"))?.stage, "q");
    assert.deepEqual(await a.queued(10), ["op"]);
    // Its old worker comes back in time: it takes the action back from the queue.
    assert.equal(await a.adopt("op", "w1", "w1b", 10_000), true);
    assert.deepEqual(await a.queued(10), []);
    assert.equal(await a.requeue("op", "w1b", true, 1, "fail", 60_000), 2);
    const done = await a.action("op");
    assert.equal(done?.stage, "d");
    assert.equal(done?.resp, "fail");
    assert.equal(done?.attempts, 2);
  });
});

Deno.test("RedisSchedulerState cancels an operation; its action ends only with its last operation", async () => {
  await withReplicas(async (a, b) => {
    await add(a, "op1", "k");
    await add(b, "op2", "k");
    assert.equal(await a.claim("op1", "w", 10_000), true);
    assert.equal(await b.cancel("op2", "cancelled", "abandoned", 60_000), true);
    assert.equal(await b.cancel("op2", "cancelled", "abandoned", 60_000), false);
    assert.deepEqual(await a.op("op2"), { id: "op1", resp: "cancelled" });
    assert.equal((await a.action("op1"))?.stage, "x");
    assert.equal(await a.cancel("op1", "cancelled", "abandoned", 60_000), true);
    const done = await a.action("op1");
    assert.equal(done?.stage, "d");
    assert.equal(done?.resp, "abandoned");
  });
});

Deno.test("RedisSchedulerState reports UNAVAILABLE when Redis is down", async () => {
  const redis = await startRedis();
  const url = redis.url;
  await redis.stop();
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on("error", () => {});
  const state = new RedisSchedulerState(client, "t/");
  try {
    await assert.rejects(add(state, "op"), (err: { code?: unknown }) => err.code === Code.Unavailable);
  } finally {
    await state.close();
  }
});
