import assert from "node:assert/strict";
import { digestOf } from "../digest/digest.ts";
import { runStoreConformance } from "./conformance_suite.ts";
import { has, putBytes } from "./helpers.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";

runStoreConformance(
  "memory",
  () => Promise.resolve({ store: createMemoryStore(), cleanup: () => Promise.resolve() }),
);

const blob = (i: number, size = 100) => {
  const b = new Uint8Array(size);
  b.fill(i);
  return { bytes: b, digest: digestOf(b) };
};

Deno.test("memory: max_bytes evicts least recently used down to max_bytes - evict_bytes", async () => {
  const store = createMemoryStore({
    evictionPolicy: { maxBytes: 1000, evictBytes: 300, maxSeconds: 0, maxCount: 0 },
  });
  const blobs = Array.from({ length: 10 }, (_, i) => blob(i));
  for (const b of blobs) await putBytes(store, b.digest, b.bytes);
  assert.equal(store.bytes, 1000);
  // Touch blob 0 so it becomes the most recently used.
  await (await store.read(blobs[0]!.digest)).cancel();
  const extra = blob(50);
  await putBytes(store, extra.digest, extra.bytes);
  // 1100 > 1000 → evict down to 700: blobs 1..4 go (oldest first), 0 survives.
  assert.equal(store.bytes, 700);
  const sizes = await store.hasMany(blobs.map((b) => b.digest));
  assert.deepEqual(sizes, [100, undefined, undefined, undefined, undefined, 100, 100, 100, 100, 100]);
  assert.equal(await has(store, extra.digest), 100);
});

Deno.test("memory: max_count keeps the newest entries", async () => {
  const store = createMemoryStore({
    evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 0, maxCount: 3 },
  });
  const blobs = Array.from({ length: 5 }, (_, i) => blob(i, 10));
  for (const b of blobs) await putBytes(store, b.digest, b.bytes);
  assert.equal(store.count, 3);
  assert.deepEqual(await store.hasMany(blobs.map((b) => b.digest)), [undefined, undefined, 10, 10, 10]);
});

Deno.test("memory: a key found by hasMany counts as used and is evicted last", async () => {
  const store = createMemoryStore({
    evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 0, maxCount: 3 },
  });
  const blobs = Array.from({ length: 4 }, (_, i) => blob(i, 10));
  for (const b of blobs.slice(0, 3)) await putBytes(store, b.digest, b.bytes);
  assert.deepEqual(await store.hasMany([blobs[0]!.digest]), [10]);
  await putBytes(store, blobs[3]!.digest, blobs[3]!.bytes);
  assert.deepEqual(await store.hasMany(blobs.map((b) => b.digest)), [10, undefined, 10, 10]);
});

Deno.test("memory: max_seconds expires entries not accessed for that long", async () => {
  let now = 1_000_000;
  const store = createMemoryStore({
    evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 10, maxCount: 0 },
    now: () => now,
  });
  const a = blob(1);
  const b = blob(2);
  await putBytes(store, a.digest, a.bytes);
  now += 6_000;
  await putBytes(store, b.digest, b.bytes);
  now += 6_000; // a is 12 s old, b 6 s
  assert.deepEqual(await store.hasMany([a.digest, b.digest]), [undefined, 100]);
  await (await store.read(b.digest)).cancel(); // refreshes b
  now += 8_000;
  assert.equal(await has(store, b.digest), 100); // found: counts as used, refreshes b again
  now += 11_000;
  assert.equal(await has(store, b.digest), undefined);
});

Deno.test("memory: registry builds it from NativeLink fields and rejects unknown ones", async () => {
  const registry = createStoreRegistry();
  const store = registry.build("ac", { memory: { eviction_policy: { max_count: 1 } } });
  const a = blob(1);
  const b = blob(2);
  await putBytes(store, a.digest, a.bytes);
  await putBytes(store, b.digest, b.bytes);
  assert.deepEqual(await store.hasMany([a.digest, b.digest]), [undefined, 100]);
  assert.throws(
    () => registry.build("ac", { memory: { eviction_policy: { max_byte: 1 } } }),
    /Cannot open store "ac": unknown eviction_policy field "max_byte"/,
  );
});
