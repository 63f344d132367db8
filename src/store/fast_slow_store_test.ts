import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { collectBytes, patternBytes } from "../util/streams.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { getBytes, has, putBytes, WrapperStore } from "./helpers.ts";
import { createFastSlowStore, type StoreDirection } from "./fast_slow_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";
import type { ReadOptions, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** Counts reads and can delay them. */
class CountingStore extends WrapperStore {
  reads = 0;
  gate: Promise<void> | undefined;
  failWrites = false;
  override async read(key: StoreKey, options?: ReadOptions) {
    this.reads++;
    if (this.gate) await this.gate;
    return await super.read(key, options);
  }
  override async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ) {
    if (this.failWrites) {
      await data.cancel();
      throw new Error("disk on fire");
    }
    return await super.write(key, data, size, options);
  }
}

runStoreConformance(
  "fast_slow",
  () =>
    Promise.resolve({
      store: createFastSlowStore(createMemoryStore(), createMemoryStore()),
      cleanup: async () => {},
    }),
);

const blob = async (size: number, seed: number) => {
  const bytes = await patternBytes(size, seed);
  return { bytes, d: digestOf(bytes) };
};

Deno.test("fast_slow fills the fast store on a slow hit and serves the range", async () => {
  const fast = createMemoryStore();
  const slow = createMemoryStore();
  const store = createFastSlowStore(fast, slow);
  const { bytes, d } = await blob(1_000_000, 1);
  await putBytes(slow, d, bytes);
  const part = await getBytes(store, d, { maxSize: 1 << 20, offset: 300_000, length: 1000 });
  assert.ok(Buffer.compare(part, bytes.subarray(300_000, 301_000)) === 0);
  await store.settled();
  assert.equal(await has(fast, d), bytes.byteLength);
});

Deno.test("fast_slow concurrent misses share one slow read", async () => {
  const fast = new CountingStore(createMemoryStore());
  const slow = new CountingStore(createMemoryStore());
  const store = createFastSlowStore(fast, slow);
  const { bytes, d } = await blob(700_000, 2);
  await putBytes(slow, d, bytes);
  let open!: () => void;
  slow.gate = new Promise((r) => (open = r));
  const reads = Array.from({ length: 5 }, () => getBytes(store, d, { maxSize: 1 << 20 }));
  // Open the gate once all five readers missed the fast store (and so joined the one slow read).
  for (const deadline = Date.now() + 30_000; fast.reads < 5 && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(fast.reads, 5);
  open();
  for (const got of await Promise.all(reads)) assert.ok(Buffer.compare(got, bytes) === 0);
  assert.equal(slow.reads, 1);
  await store.settled();
});

Deno.test("fast_slow keeps filling when the client cancels, and commits no partial on failure", async () => {
  const fast = createMemoryStore();
  const slow = createMemoryStore();
  const store = createFastSlowStore(fast, slow);
  const { bytes, d } = await blob(2_000_000, 3);
  await putBytes(slow, d, bytes);
  const stream = await store.read(d);
  const reader = stream.getReader();
  await reader.read();
  await reader.cancel();
  await store.settled();
  assert.equal(await has(fast, d), bytes.byteLength);

  // A slow store that breaks mid-stream: the client errors, the fast store stays empty.
  const broken = new (class extends WrapperStore {
    override async read(key: StoreKey, options?: ReadOptions) {
      const s = await super.read(key, options);
      let n = 0;
      return s.pipeThrough(
        new TransformStream({
          transform(c, ctl) {
            if (++n > 2) throw new Error("connection reset");
            ctl.enqueue(c);
          },
        }),
      );
    }
  })(slow);
  const fast2 = createMemoryStore();
  const store2 = createFastSlowStore(fast2, broken);
  await assert.rejects(
    collectBytes(await store2.read(d), 1 << 22),
    (e: { code?: unknown; message?: string }) =>
      e.code === Code.Internal && /connection reset/.test(e.message ?? ""),
  );
  await store2.settled();
  assert.equal(await has(fast2, d), undefined);
});

Deno.test("fast_slow writes to both stores, and fails when one fails", async () => {
  const fast = createMemoryStore();
  const slow = new CountingStore(createMemoryStore());
  const store = createFastSlowStore(fast, slow);
  const { bytes, d } = await blob(900_000, 4);
  await putBytes(store, d, bytes);
  assert.equal(await has(fast, d), bytes.byteLength);
  assert.equal(await has(slow, d), bytes.byteLength);
  slow.failWrites = true;
  const other = await blob(10_000, 5);
  await assert.rejects(putBytes(store, other.d, other.bytes), /disk on fire/);
});

Deno.test("fast_slow directions restrict writes and fills", async () => {
  const cases: [StoreDirection, StoreDirection, boolean, boolean, boolean][] = [
    // fast dir, slow dir, write→fast, write→slow, read fills fast
    ["both", "both", true, true, true],
    ["update", "both", true, true, false],
    ["get", "both", false, true, true],
    ["read_only", "read_only", false, false, false],
    ["both", "get", true, false, true],
  ];
  for (const [fd, sd, wf, ws, fills] of cases) {
    const fast = createMemoryStore();
    const slow = createMemoryStore();
    const store = createFastSlowStore(fast, slow, { fastDirection: fd, slowDirection: sd });
    const a = await blob(1000, 6);
    await putBytes(store, a.d, a.bytes);
    assert.equal(await has(fast, a.d) !== undefined, wf, `${fd}/${sd} write to fast`);
    assert.equal(await has(slow, a.d) !== undefined, ws, `${fd}/${sd} write to slow`);
    const b = await blob(1000, 7);
    await putBytes(slow, b.d, b.bytes);
    assert.ok(Buffer.compare(await getBytes(store, b.d, { maxSize: 5000 }), b.bytes) === 0);
    await store.settled();
    assert.equal(await has(fast, b.d) !== undefined, fills, `${fd}/${sd} read fills fast`);
  }
});

Deno.test("fast_slow is built by the registry and misses everywhere are NOT_FOUND", async () => {
  const store = createStoreRegistry().build("cas", {
    fast_slow: { fast: { memory: {} }, slow: { memory: {} }, slow_direction: "update" },
  });
  await assertRejectsWithCode(store.read(digestOf(new Uint8Array(3))), Code.NotFound);
  assert.throws(
    () =>
      createStoreRegistry().build("cas", {
        fast_slow: { fast: { memory: {} }, slow: { memory: {} }, fast_direction: "up" },
      }),
    /fast_direction must be one of/,
  );
});

Deno.test("a wrapper's transformed bytes under a digest key come back whole from the slow store", async () => {
  // What a dedup index or compressed value looks like to fast_slow after a restart emptied its fast store:
  // more bytes than the digest key's size, written with `{ max }`.
  const original = new TextEncoder().encode("seventeen bytes!!");
  const key = digestOf(original);
  const stored = new Uint8Array(52).map((_, i) => i);
  const slow = createMemoryStore();
  await slow.write(key, new Blob([stored]).stream(), { max: stored.byteLength });
  const store = createFastSlowStore(createMemoryStore(), slow);
  const whole = new Uint8Array(await new Response(await store.read(key)).arrayBuffer());
  assert.deepEqual(whole, stored);
  // A range is resolved against the stored size.
  const tail = new Uint8Array(await new Response(await store.read(key, { offset: 40 })).arrayBuffer());
  assert.deepEqual(tail, stored.subarray(40));
});
