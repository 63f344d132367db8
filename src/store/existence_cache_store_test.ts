import assert from "node:assert/strict";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { putBytes, WrapperStore } from "./helpers.ts";
import { createExistenceCacheStore } from "./existence_cache_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import type { StoreKey } from "./types.ts";

/** Counts hasMany calls and keys. */
class CountingStore extends WrapperStore {
  hasCalls = 0;
  override hasMany(keys: readonly StoreKey[]) {
    this.hasCalls++;
    return super.hasMany(keys);
  }
}

runStoreConformance(
  "existence_cache",
  () => Promise.resolve({ store: createExistenceCacheStore(createMemoryStore()), cleanup: async () => {} }),
);

const policy = (maxSeconds: number, maxCount = 0) => ({ maxBytes: 0, evictBytes: 0, maxSeconds, maxCount });

Deno.test("existence_cache answers repeated has calls without the backend within the TTL", async () => {
  let now = 1_000_000;
  const backend = new CountingStore(createMemoryStore());
  const store = createExistenceCacheStore(backend, policy(60), () => now);
  const bytes = new TextEncoder().encode("cached");
  const d = digestOf(bytes);
  await putBytes(backend, d, bytes);
  assert.deepEqual(await store.hasMany([d]), [bytes.byteLength]);
  assert.equal(backend.hasCalls, 1);
  assert.deepEqual(await store.hasMany([d]), [bytes.byteLength]);
  assert.equal(backend.hasCalls, 1);
  now += 61_000;
  assert.deepEqual(await store.hasMany([d]), [bytes.byteLength]);
  assert.equal(backend.hasCalls, 2);
});

Deno.test("existence_cache does not cache misses and learns from writes", async () => {
  const backend = new CountingStore(createMemoryStore());
  const store = createExistenceCacheStore(backend, policy(0, 10));
  const bytes = new TextEncoder().encode("later");
  const d = digestOf(bytes);
  assert.deepEqual(await store.hasMany([d]), [undefined]);
  assert.deepEqual(await store.hasMany([d]), [undefined]);
  assert.equal(backend.hasCalls, 2);
  await putBytes(store, d, bytes);
  assert.deepEqual(await store.hasMany([d]), [bytes.byteLength]);
  assert.equal(backend.hasCalls, 2);
});

Deno.test("existence_cache drops a key when a read finds it gone", async () => {
  const inner = createMemoryStore();
  const backend = new CountingStore(inner);
  const store = createExistenceCacheStore(backend);
  const bytes = new TextEncoder().encode("evicted behind our back");
  const d = digestOf(bytes);
  await putBytes(store, d, bytes);
  await inner.delete(d);
  assert.deepEqual(await store.hasMany([d]), [bytes.byteLength]); // stale, from the cache
  await assertRejectsWithCode(store.read(d), Code.NotFound);
  assert.deepEqual(await store.hasMany([d]), [undefined]);
  assert.equal(store.cachedCount, 0);
});
