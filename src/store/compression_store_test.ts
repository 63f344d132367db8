import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { bytesStream, patternBytes } from "../util/streams.ts";
import { createCompressionStore } from "./compression_store.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { getBytes, has, putBytes, WrapperStore } from "./helpers.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";
import type { ReadOptions, StoreKey } from "./types.ts";

/** Counts the stored bytes read through it. */
class CountingStore extends WrapperStore {
  bytesRead = 0;
  override async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    const s = await super.read(key, options);
    return s.pipeThrough(
      new TransformStream({
        transform: (c, ctl) => {
          this.bytesRead += c.byteLength;
          ctl.enqueue(c);
        },
      }),
    );
  }
}

runStoreConformance(
  "compression",
  () =>
    Promise.resolve({
      store: createCompressionStore(createMemoryStore(), { blockSize: 4096 }),
      cleanup: async () => {},
    }),
);

const text = (n: number) => new TextEncoder().encode("cairn compresses build outputs well; ".repeat(n));

Deno.test("compression stores fewer bytes than it is given for compressible data", async () => {
  const inner = createMemoryStore();
  const store = createCompressionStore(inner, { blockSize: 4096 });
  const bytes = text(5000);
  const d = digestOf(bytes);
  await putBytes(store, d, bytes);
  const stored = await has(inner, d);
  assert.ok(
    stored !== undefined && stored < bytes.byteLength / 10,
    `stored ${stored} of ${bytes.byteLength}`,
  );
  assert.equal(await has(store, d), bytes.byteLength);
  assert.ok(Buffer.compare(await getBytes(store, d, { maxSize: 1 << 30 }), bytes) === 0);
});

Deno.test("compression round-trips incompressible data stored raw", async () => {
  const inner = createMemoryStore();
  const store = createCompressionStore(inner, { blockSize: 4096 });
  const bytes = new Uint8Array(50_000);
  crypto.getRandomValues(bytes);
  await putBytes(store, "random", bytes);
  const stored = (await has(inner, "random"))!;
  assert.ok(stored < bytes.byteLength + 300, `raw blocks add only framing, stored ${stored}`);
  assert.equal(await has(store, "random"), bytes.byteLength);
  assert.ok(Buffer.compare(await getBytes(store, "random", { maxSize: 1 << 20 }), bytes) === 0);
  const part = await getBytes(store, "random", { maxSize: 1 << 20, offset: 4095, length: 4098 });
  assert.ok(Buffer.compare(part, bytes.subarray(4095, 8193)) === 0);
});

Deno.test("compression range read reads only the blocks it needs", async () => {
  const counting = new CountingStore(createMemoryStore());
  const store = createCompressionStore(counting, { blockSize: 4096 });
  const bytes = await patternBytes(4 << 20, 3); // incompressible: stored ≈ uncompressed
  await putBytes(store, "big", bytes);
  counting.bytesRead = 0;
  const offset = 3_000_000;
  const part = await getBytes(store, "big", { maxSize: 1 << 20, offset, length: 5000 });
  assert.ok(Buffer.compare(part, bytes.subarray(offset, offset + 5000)) === 0);
  assert.ok(counting.bytesRead < 3 * 4096 + 200, `read ${counting.bytesRead} stored bytes for 5000`);
  // From the start with a length: stops early too.
  counting.bytesRead = 0;
  const head = await getBytes(store, "big", { maxSize: 1 << 20, length: 100 });
  assert.ok(Buffer.compare(head, bytes.subarray(0, 100)) === 0);
  assert.ok(counting.bytesRead < 1 << 20, `read ${counting.bytesRead} stored bytes for the head`);
});

Deno.test("compression refuses a corrupt stored value with DATA_LOSS", async () => {
  const inner = createMemoryStore();
  const store = createCompressionStore(inner);
  await putBytes(inner, "bad", new TextEncoder().encode("not a compressed value at all, just text!!"));
  await assertRejectsWithCode(getBytes(store, "bad", { maxSize: 1000 }), Code.DataLoss);
  await assertRejectsWithCode(getBytes(store, "bad", { maxSize: 1000, offset: 3 }), Code.DataLoss);
});

Deno.test("compression refuses block sizes above max_decode_block_size", async () => {
  const inner = createMemoryStore();
  await putBytes(createCompressionStore(inner, { blockSize: 1 << 20 }), "k", text(100));
  const strict = createCompressionStore(inner, { blockSize: 4096 });
  await assertRejectsWithCode(getBytes(strict, "k", { maxSize: 1 << 20 }), Code.DataLoss);
});

Deno.test("compression is built by the registry from NativeLink's spec", async () => {
  const store = createStoreRegistry().build("cas", {
    compression: { compression_algorithm: { lz4: { block_size: 1024 } }, backend: { memory: {} } },
  });
  assert.equal(store.kind, "compression");
  const bytes = text(100);
  await store.write("x", bytesStream(bytes), { exact: bytes.byteLength });
  assert.equal(await has(store, "x"), bytes.byteLength);
  assert.throws(
    () =>
      createStoreRegistry().build("cas", {
        compression: { compression_algorithm: { zstd: {} }, backend: { memory: {} } },
      }),
    /Cannot open store "cas".*lz4/,
  );
});
