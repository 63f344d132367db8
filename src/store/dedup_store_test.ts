import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { patternBytes } from "../util/streams.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { getBytes, has, putBytes } from "./helpers.ts";
import { createDedupStore } from "./dedup_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";

const SMALL = { minSize: 4096, normalSize: 16384, maxSize: 65536, maxConcurrentFetchPerGet: 3 };

runStoreConformance("dedup", () =>
  Promise.resolve({
    store: createDedupStore(createMemoryStore(), createMemoryStore(), SMALL),
    cleanup: async () => {},
  }));

Deno.test("dedup stores chunks shared by two similar blobs once", async () => {
  const index = createMemoryStore();
  const content = createMemoryStore();
  const store = createDedupStore(index, content, SMALL);
  const a = await patternBytes(1_000_000, 9);
  const b = new Uint8Array(a.byteLength + 100);
  b.set(a.subarray(0, 500_000));
  b.set(new Uint8Array(100).fill(7), 500_000);
  b.set(a.subarray(500_000), 500_100);
  await putBytes(store, digestOf(a), a);
  const afterA = content.bytes;
  await putBytes(store, digestOf(b), b);
  const added = content.bytes - afterA;
  assert.ok(added < 3 * SMALL.maxSize, `second blob added ${added} content bytes`);
  assert.ok(Buffer.compare(await getBytes(store, digestOf(b), { maxSize: 1 << 21 }), b) === 0);
  assert.ok(Buffer.compare(await getBytes(store, digestOf(a), { maxSize: 1 << 21 }), a) === 0);
});

Deno.test("dedup range reads skip whole chunks", async () => {
  const content = createMemoryStore();
  const store = createDedupStore(createMemoryStore(), content, SMALL);
  const a = await patternBytes(600_000, 10);
  const d = digestOf(a);
  await putBytes(store, d, a);
  for (const [offset, length] of [[0, 1], [123_456, 70_000], [599_999, 10], [600_000, 5]] as const) {
    const got = await getBytes(store, d, { maxSize: 1 << 20, offset, length });
    assert.ok(Buffer.compare(got, a.subarray(offset, offset + length)) === 0, `range ${offset}+${length}`);
  }
});

Deno.test("dedup reports a blob absent once one of its chunks is gone", async () => {
  const content = createMemoryStore();
  const store = createDedupStore(createMemoryStore(), content, SMALL);
  const a = await patternBytes(200_000, 11);
  const d = digestOf(a);
  await putBytes(store, d, a);
  assert.equal(await has(store, d), a.byteLength);
  let first: import("./types.ts").StoreKey | undefined;
  for await (const k of content.list()) {
    first = k;
    break;
  }
  await content.delete(first!);
  assert.equal(await has(store, d), undefined);
  await assertRejectsWithCode(getBytes(store, d, { maxSize: 1 << 20 }), Code.NotFound);
});

Deno.test("dedup is built by the registry with NativeLink's fields", async () => {
  const store = createStoreRegistry().build("cas", {
    dedup: {
      index_store: { memory: {} },
      content_store: { memory: {} },
      min_size: 1024,
      normal_size: 4096,
      max_size: 8192,
    },
  });
  const a = await patternBytes(50_000, 12);
  await putBytes(store, "named", a);
  assert.equal(await has(store, "named"), a.byteLength);
  assert.throws(
    () =>
      createStoreRegistry().build("cas", {
        dedup: { index_store: { memory: {} }, content_store: { memory: {} }, min_size: 9e6 },
      }),
    /min_size <= normal_size/,
  );
});
