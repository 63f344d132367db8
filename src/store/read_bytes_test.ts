/**
 * Every wrapper that passes bytes through unchanged forwards `readBytes` (the small-value shortcut) to the
 * store it wraps; wrappers that change bytes (compression) have none, so `getBytes` reads their stream.
 *
 * @example
 * ```sh
 * deno test --allow-all src/store/read_bytes_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ActionResultSchema,
  DigestSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Digest, digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode } from "./conformance_suite.ts";
import { createCompletenessCheckingStore } from "./completeness_checking_store.ts";
import { createCompressionStore } from "./compression_store.ts";
import { createExistenceCacheStore } from "./existence_cache_store.ts";
import { createFastSlowStore } from "./fast_slow_store.ts";
import { acKey, getBytes, has, putBytes } from "./helpers.ts";
import { createMemoryStore, type MemoryStore } from "./memory_store.ts";
import { createRefStore } from "./ref_store.ts";
import { createShardStore } from "./shard_store.ts";
import { createSizePartitioningStore } from "./size_partitioning_store.ts";
import type { StoreDriver, StoreKey } from "./types.ts";
import { createVerifyStore } from "./verify_store.ts";

/** A memory store counting `readBytes` calls. */
function spied(): { store: MemoryStore; calls: StoreKey[] } {
  const store = createMemoryStore();
  const calls: StoreKey[] = [];
  const original = store.readBytes.bind(store);
  store.readBytes = (key, options) => {
    calls.push(key);
    return original(key, options);
  };
  return { store, calls };
}

const bytes = new TextEncoder().encode("a small output of an action");
const digest: Digest = digestOf(bytes);

const cases: { name: string; build: (inner: StoreDriver) => Promise<StoreDriver> }[] = [
  { name: "verify", build: (inner) => Promise.resolve(createVerifyStore(inner, { verifyHash: true })) },
  { name: "existence_cache", build: (inner) => Promise.resolve(createExistenceCacheStore(inner)) },
  {
    name: "ref_store",
    build: async (inner) => {
      const ref = createRefStore("CAS");
      await ref.init({ get: () => inner });
      return ref;
    },
  },
  {
    name: "size_partitioning",
    build: (inner) => Promise.resolve(createSizePartitioningStore(1 << 20, inner, createMemoryStore())),
  },
  { name: "shard", build: (inner) => Promise.resolve(createShardStore([{ store: inner, weight: 1 }])) },
  {
    name: "fast_slow (fast hit)",
    build: (inner) => Promise.resolve(createFastSlowStore(inner, createMemoryStore())),
  },
  {
    name: "completeness_checking (CAS key)",
    build: (inner) => Promise.resolve(createCompletenessCheckingStore(inner, createMemoryStore())),
  },
];

for (const c of cases) {
  Deno.test(`readBytes: ${c.name} forwards the shortcut of the store it wraps`, async () => {
    const { store, calls } = spied();
    await putBytes(store, digest, bytes);
    const wrapper = await c.build(store);
    assert.equal(typeof wrapper.readBytes, "function");
    assert.deepEqual(await getBytes(wrapper, digest, { maxSize: 100 }), bytes);
    assert.deepEqual(
      await getBytes(wrapper, digest, { maxSize: 100, offset: 2, length: 5 }),
      bytes.subarray(2, 7),
    );
    assert.equal(calls.length, 2);
    await assertRejectsWithCode(getBytes(wrapper, digest, { maxSize: 3 }), Code.ResourceExhausted);
    const absent = digestOf(new TextEncoder().encode("absent"));
    await assertRejectsWithCode(getBytes(wrapper, absent, { maxSize: 100 }), Code.NotFound);
  });
}

Deno.test("readBytes: fast_slow fills the fast store on a miss and serves it from there next time", async () => {
  const fast = spied();
  const slow = createMemoryStore();
  await putBytes(slow, digest, bytes);
  const store = createFastSlowStore(fast.store, slow);
  assert.deepEqual(await store.readBytes(digest, { maxSize: 100 }), bytes);
  await store.settled();
  assert.equal(await has(fast.store, digest), bytes.byteLength);
  assert.deepEqual(await store.readBytes(digest, { maxSize: 100, offset: 1 }), bytes.subarray(1));
  assert.equal(fast.calls.length, 2, "both reads tried the fast store's shortcut");
});

Deno.test("readBytes: completeness_checking serves a complete AC entry and hides an incomplete one", async () => {
  const backend = spied();
  const cas = createMemoryStore();
  const store = createCompletenessCheckingStore(backend.store, cas);
  const entry = toBinary(
    ActionResultSchema,
    create(ActionResultSchema, {
      outputFiles: [{
        path: "out",
        digest: create(DigestSchema, { hash: digest.hash, sizeBytes: BigInt(digest.size) }),
      }],
    }),
  );
  const key = acKey(digestOf(new TextEncoder().encode("action")));
  await putBytes(backend.store, key, entry);
  await assertRejectsWithCode(store.readBytes(key, { maxSize: 1000 }), Code.NotFound);
  await putBytes(cas, digest, bytes);
  assert.deepEqual(await store.readBytes(key, { maxSize: 1000 }), entry);
  assert.deepEqual(await store.readBytes(key, { maxSize: 1000, offset: 3, length: 4 }), entry.subarray(3, 7));
  await assertRejectsWithCode(
    store.readBytes(key, { maxSize: entry.byteLength - 1 }),
    Code.ResourceExhausted,
  );
  assert.ok(backend.calls.length >= 3, "the entry is read through the backend's shortcut");
});

Deno.test("readBytes: compression has no shortcut (its stored bytes are not the value), getBytes still works", async () => {
  const { store, calls } = spied();
  const compressed = createCompressionStore(store);
  assert.equal((compressed as StoreDriver).readBytes, undefined);
  await putBytes(compressed, digest, bytes);
  assert.deepEqual(await getBytes(compressed, digest, { maxSize: 100 }), bytes);
  assert.equal(calls.length, 0);
});
