import assert from "node:assert/strict";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { bytesStream } from "../util/streams.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { has, putBytes } from "./helpers.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";
import { createSizePartitioningStore } from "./size_partitioning_store.ts";

runStoreConformance(
  "size_partitioning",
  () =>
    Promise.resolve({
      store: createSizePartitioningStore(1000, createMemoryStore(), createMemoryStore()),
      cleanup: async () => {},
    }),
  { stringKeys: false },
);

Deno.test("size_partitioning sends small digests down and large ones up", async () => {
  const lower = createMemoryStore();
  const upper = createMemoryStore();
  const store = createSizePartitioningStore(100, lower, upper);
  const small = digestOf(new Uint8Array(99));
  const big = digestOf(new Uint8Array(100));
  await putBytes(store, small, new Uint8Array(99));
  await putBytes(store, big, new Uint8Array(100));
  assert.deepEqual(await lower.hasMany([small, big]), [99, undefined]);
  assert.deepEqual(await upper.hasMany([small, big]), [undefined, 100]);
  assert.deepEqual(await store.hasMany([big, small]), [100, 99]);
});

Deno.test("size_partitioning refuses string keys with INVALID_ARGUMENT", async () => {
  const store = createStoreRegistry().build("cas", {
    size_partitioning: { size: 10, lower_store: { memory: {} }, upper_store: { memory: {} } },
  });
  await assertRejectsWithCode(
    store.write("name", bytesStream(new Uint8Array(1)), { exact: 1 }),
    Code.InvalidArgument,
  );
  await assertRejectsWithCode(store.read("name"), Code.InvalidArgument);
  await assertRejectsWithCode(has(store, "name"), Code.InvalidArgument);
});
