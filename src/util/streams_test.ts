import assert from "node:assert/strict";
import { CairnError, Code } from "./error.ts";
import {
  bytesStream,
  collectBytes,
  concatBytes,
  countingStream,
  forEachChunk,
  hashingStream,
  patternBytes,
  patternStream,
  readChunks,
  sizeCheckStream,
  sliceStream,
} from "./streams.ts";
import { digestOf } from "../digest/digest.ts";

const data = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);

Deno.test("streams: slice picks the byte range across chunks and cancels the rest", async () => {
  let cancelled = false;
  const { promise: cancelCalled, resolve: onCancel } = Promise.withResolvers<void>();
  const out = await collectBytes(bytesStream(data, 64).pipeThrough(sliceStream(100, 300)), 10_000);
  assert.deepEqual(out, data.subarray(100, 400));
  assert.deepEqual(
    await collectBytes(bytesStream(data, 7).pipeThrough(sliceStream(990)), 100),
    data.subarray(990),
  );
  assert.equal((await collectBytes(bytesStream(data).pipeThrough(sliceStream(5, 0)), 100)).byteLength, 0);
  const source = new ReadableStream<Uint8Array>({
    pull: (c) => c.enqueue(new Uint8Array(10)),
    cancel: () => {
      cancelled = true;
      onCancel();
    },
  });
  assert.equal((await collectBytes(source.pipeThrough(sliceStream(0, 25)), 100)).byteLength, 25);
  // The cancel reaches the source asynchronously: wait for it, bounded.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([cancelCalled, new Promise((r) => timer = setTimeout(r, 30_000))]);
  clearTimeout(timer);
  assert.ok(cancelled, "an endless source is cancelled once the slice is complete");
});

Deno.test("streams: collectBytes refuses more than max", async () => {
  await assert.rejects(collectBytes(bytesStream(data), 999), (e: unknown) => {
    return e instanceof CairnError && e.code === Code.ResourceExhausted;
  });
});

Deno.test("streams: sizeCheckStream rejects short and long streams", async () => {
  await assert.rejects(
    collectBytes(bytesStream(data).pipeThrough(sizeCheckStream({ exact: 1001 })), 1e6),
    /expected 1001 bytes, got 1000/,
  );
  await assert.rejects(
    collectBytes(bytesStream(data).pipeThrough(sizeCheckStream({ max: 999 })), 1e6),
    /more than the limit of 999/,
  );
  assert.equal(
    (await collectBytes(bytesStream(data).pipeThrough(sizeCheckStream({ exact: 1000 })), 1e6)).byteLength,
    1000,
  );
});

Deno.test("streams: counting and hashing pass bytes through", async () => {
  const counter = { bytes: 0 };
  let hash = "";
  const out = await collectBytes(
    bytesStream(data, 100).pipeThrough(countingStream(counter)).pipeThrough(hashingStream((h) => (hash = h))),
    1e6,
  );
  assert.deepEqual(out, data);
  assert.equal(counter.bytes, 1000);
  assert.equal(hash, digestOf(data).hash);
});

Deno.test("streams: forEachChunk stops on abort with CANCELLED", async () => {
  const ac = new AbortController();
  let n = 0;
  const endless = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(new Uint8Array(1)) });
  await assert.rejects(
    forEachChunk(endless, () => {
      if (++n === 5) ac.abort();
    }, ac.signal),
    (e: unknown) => e instanceof CairnError && e.code === Code.Cancelled,
  );
  assert.equal(n, 5);
});

Deno.test("streams: patternStream is deterministic and distinct per seed", async () => {
  const a = await patternBytes(3000, 1, 1024);
  const b = await collectBytes(patternStream(3000, 1, 1024), 1e6);
  const c = await patternBytes(3000, 2, 1024);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a.subarray(0, 1024), a.subarray(1024, 2048));
});

Deno.test("streams: patternStream from a ring of reused buffers yields the same bytes", async () => {
  const plain = await patternBytes(10_000, 4, 1024);
  const copies: Uint8Array[] = [];
  const seen = new Set<ArrayBufferLike>();
  for await (const chunk of patternStream(10_000, 4, 1024, 3)) {
    copies.push(chunk.slice()); // copy now: the buffer comes back three chunks later
    seen.add(chunk.buffer);
  }
  assert.deepEqual(concatBytes(copies), plain);
  assert.equal(seen.size, 3);
});

/** A byte stream of `bytes` handing out at most `step` bytes per pull (a file read), counting cancels. */
function byteSource(
  bytes: Uint8Array,
  step: number,
  state: { cancelled: boolean },
): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: step,
    pull(controller) {
      const view = controller.byobRequest!.view!;
      const n = Math.min(view.byteLength, step, bytes.byteLength - pos);
      new Uint8Array(view.buffer, view.byteOffset, n).set(bytes.subarray(pos, pos + n));
      pos += n;
      controller.byobRequest!.respond(n);
      if (pos === bytes.byteLength) {
        controller.close();
        controller.byobRequest?.respond(0);
      }
    },
    cancel() {
      state.cancelled = true;
    },
  });
}

Deno.test("streams: readChunks fills whole chunks from a byte stream, reusing two buffers", async () => {
  const state = { cancelled: false };
  const chunks: Uint8Array[] = [];
  const buffers = new Set<ArrayBufferLike>();
  for await (const c of readChunks(byteSource(data, 70, state), 300, true)) {
    chunks.push(c.slice());
    buffers.add(c.buffer);
  }
  assert.deepEqual(chunks.map((c) => c.byteLength), [300, 300, 300, 100]);
  assert.deepEqual(concatBytes(chunks), data);
  // Each BYOB read transfers the buffer (a new ArrayBuffer object each time), so count distinct contents
  // instead: two buffers alternate, so chunk k+2 is read into chunk k's memory.
  assert.ok(buffers.size >= 2);
});

Deno.test("streams: readChunks refills a chunk's buffer only once the next chunk is asked for", async () => {
  const state = { cancelled: false };
  const seen: Uint8Array[] = [];
  for await (const c of readChunks(byteSource(data, 1000, state), 100, true)) {
    // This chunk is intact while it is handled, though the next one is being read meanwhile…
    assert.deepEqual(c, data.subarray(seen.length * 100, (seen.length + 1) * 100));
    // …into the previous chunk's buffer, handed to the reader once this one was asked for.
    if (seen.length > 0) assert.equal(seen.at(-1)!.byteLength, 0);
    seen.push(c);
  }
  assert.equal(seen.length, 10);
  // Without reuse every chunk keeps its bytes.
  const kept: Uint8Array[] = [];
  for await (const c of readChunks(byteSource(data, 1000, state), 100, false)) kept.push(c);
  assert.deepEqual(concatBytes(kept), data);
});

Deno.test("streams: readChunks cuts other streams and cancels the source on an early return", async () => {
  const sizes: number[] = [];
  for await (const c of readChunks(bytesStream(data, 250), 100, true)) sizes.push(c.byteLength);
  assert.deepEqual(sizes, [100, 100, 50, 100, 100, 50, 100, 100, 50, 100, 100, 50]);
  const state = { cancelled: false };
  for await (const _ of readChunks(byteSource(data, 50, state), 100, true)) break;
  assert.equal(state.cancelled, true);
  let cancelled = false;
  const plain = new ReadableStream<Uint8Array>({
    pull: (c) => c.enqueue(new Uint8Array(10)),
    cancel: () => void (cancelled = true),
  });
  for await (const _ of readChunks(plain, 100, false)) break;
  assert.equal(cancelled, true);
});

Deno.test("streams: readChunks passes on the source's error", async () => {
  const failing = new ReadableStream({
    type: "bytes",
    pull(controller) {
      controller.error(new CairnError(Code.DataLoss, "disk gone"));
    },
  });
  await assert.rejects(
    async () => {
      for await (const _ of readChunks(failing, 100, true)) { /* none */ }
    },
    (err: unknown) => err instanceof CairnError && err.code === Code.DataLoss,
  );
});
