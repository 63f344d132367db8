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
