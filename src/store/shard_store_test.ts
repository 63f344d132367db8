import assert from "node:assert/strict";
import { digestOf } from "../digest/digest.ts";
import { runStoreConformance } from "./conformance_suite.ts";
import { getBytes, putBytes } from "./helpers.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";
import { createShardStore, type ShardStore } from "./shard_store.ts";

runStoreConformance("shard", () =>
  Promise.resolve({
    store: createShardStore([{ store: createMemoryStore() }, { store: createMemoryStore(), weight: 2 }]),
    cleanup: async () => {},
  }));

Deno.test("shard spreads keys by weight, deterministically", () => {
  const stores = [createMemoryStore(), createMemoryStore(), createMemoryStore()];
  const shard = createShardStore([{ store: stores[0]!, weight: 1 }, { store: stores[1]!, weight: 3 }, {
    store: stores[2]!,
    weight: 0.0001,
  }]);
  const again = createShardStore([{ store: createMemoryStore(), weight: 1 }, {
    store: createMemoryStore(),
    weight: 3,
  }, {
    store: createMemoryStore(),
    weight: 0.0001,
  }]);
  const counts = [0, 0, 0];
  for (let i = 0; i < 2000; i++) {
    const d = digestOf(new TextEncoder().encode(`blob ${i}`));
    const s = shard.shardIndex(d);
    counts[s]!++;
    assert.equal(again.shardIndex(d), s);
    assert.equal(shard.shardIndex(`key ${i}`), again.shardIndex(`key ${i}`));
  }
  assert.ok(counts[0]! > 380 && counts[0]! < 620, `shard 0 got ${counts[0]}`);
  assert.ok(counts[1]! > 1380 && counts[1]! < 1620, `shard 1 got ${counts[1]}`);
  assert.ok(counts[2]! < 10, `shard 2 got ${counts[2]}`);
});

Deno.test("shard stores each key in exactly one shard", async () => {
  const shard = createStoreRegistry().build("cas", {
    shard: { stores: [{ store: { memory: {} } }, { store: { memory: {} }, weight: 1 }] },
  }) as ShardStore;
  const bytes = new TextEncoder().encode("sharded");
  const d = digestOf(bytes);
  await putBytes(shard, d, bytes);
  assert.deepEqual(await getBytes(shard, d, { maxSize: 100 }), bytes);
  const a = createMemoryStore();
  const b = createMemoryStore();
  const two = createShardStore([{ store: a }, { store: b }]);
  for (let i = 0; i < 20; i++) await putBytes(two, `k${i}`, bytes);
  assert.equal(a.count + b.count, 20);
  assert.ok(a.count > 0 && b.count > 0);
});
