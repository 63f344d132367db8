import assertNode from "node:assert/strict";
import zlib from "node:zlib";
import { createZstdDecompressStream, zstdCompress, zstdDecompress } from "./zstd_stream.ts";
import { CairnError, Code } from "../util/error.ts";

/** A zstd frame of `mib` MiB of zeros (a few KiB compressed). */
async function bomb(mib: number): Promise<Uint8Array> {
  const c = zlib.createZstdCompress();
  const chunks: Uint8Array[] = [];
  c.on("data", (x: Uint8Array) => chunks.push(x));
  const zero = new Uint8Array(1 << 20);
  for (let i = 0; i < mib; i++) c.write(zero);
  await new Promise((r) => c.end(r));
  return new Uint8Array(Buffer.concat(chunks));
}

Deno.test("zstd decompression stops as soon as the output passes the bound", async () => {
  const packed = await bomb(512);
  let got = 0;
  await assertNode.rejects(async () => {
    for await (
      const chunk of ReadableStream.from([packed]).pipeThrough(
        createZstdDecompressStream({ maxOutputBytes: 1000 }),
      )
    ) got += chunk.byteLength;
  }, (e: unknown) => e instanceof CairnError && e.code === Code.InvalidArgument);
  assertNode.ok(got <= 1000, `passed ${got} bytes beyond the bound`);
});

Deno.test("zstd decompression inflates only as fast as the reader reads (back-pressure)", async () => {
  // 512 MiB of output against a 200 MiB bound: the test runner shares its process (and RSS) with other test
  // files running in parallel, so the bound leaves room for their noise and still catches a decoder that
  // runs ahead of its reader (which holds most of the output).
  const packed = await bomb(512);
  const before = Deno.memoryUsage().rss;
  let peak = before;
  let total = 0;
  let n = 0;
  // A slow reader: a flowing decoder would run ahead and hold most of the 512 MiB in its queue.
  for await (
    const chunk of ReadableStream.from([packed]).pipeThrough(
      createZstdDecompressStream({ maxOutputBytes: 512 << 20 }),
    )
  ) {
    total += chunk.byteLength;
    if (++n % 16 === 0) {
      await new Promise((r) => setTimeout(r, 1));
      peak = Math.max(peak, Deno.memoryUsage().rss);
    }
  }
  assertNode.equal(total, 512 << 20);
  assertNode.ok(peak - before < 200 << 20, `RSS grew by ${(peak - before) >> 20} MiB`);
});

Deno.test("zstd streams round-trip and the in-memory form is bounded", async () => {
  const data = new TextEncoder().encode("hello ".repeat(10_000));
  const packed = zstdCompress(data);
  const parts: Uint8Array[] = [];
  for await (
    const c of ReadableStream.from([packed.subarray(0, 7), packed.subarray(7)]).pipeThrough(
      createZstdDecompressStream({ maxOutputBytes: data.byteLength }),
    )
  ) parts.push(c);
  assertNode.deepEqual(new Uint8Array(Buffer.concat(parts)), data);
  assertNode.throws(
    () => zstdDecompress(packed, 100),
    (e: unknown) => e instanceof CairnError && e.code === Code.InvalidArgument,
  );
});
