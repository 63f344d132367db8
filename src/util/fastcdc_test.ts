import assert from "node:assert/strict";
import { FastCdc, fastCdcStream } from "./fastcdc.ts";

const OPTS = { minSize: 2048, normalSize: 8192, maxSize: 16384 };

function pseudoRandom(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function chunkAll(data: Uint8Array, pieceSize: number): Uint8Array[] {
  const cdc = new FastCdc(OPTS);
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.byteLength; i += pieceSize) out.push(...cdc.push(data.subarray(i, i + pieceSize)));
  out.push(...cdc.finish());
  return out;
}

const sizes = (chunks: Uint8Array[]) => chunks.map((c) => c.byteLength);

Deno.test("fastcdc cuts at the same places however the input is split", () => {
  const data = pseudoRandom(300_000, 7);
  const whole = chunkAll(data, data.byteLength);
  assert.deepEqual(sizes(chunkAll(data, 1)), sizes(whole));
  assert.deepEqual(sizes(chunkAll(data, 4097)), sizes(whole));
  const joined = new Uint8Array(data.byteLength);
  let o = 0;
  for (const c of whole) {
    joined.set(c, o);
    o += c.byteLength;
  }
  assert.deepEqual(joined, data);
});

Deno.test("fastcdc chunks respect min and max and average near the normal size", () => {
  const data = pseudoRandom(2_000_000, 11);
  const chunks = chunkAll(data, 65536);
  for (const c of chunks.slice(0, -1)) {
    assert.ok(c.byteLength >= OPTS.minSize && c.byteLength <= OPTS.maxSize, `chunk of ${c.byteLength}`);
  }
  const avg = data.byteLength / chunks.length;
  assert.ok(avg > OPTS.normalSize * 0.6 && avg < OPTS.normalSize * 1.5, `average ${avg}`);
});

Deno.test("fastcdc resynchronises after an insertion so later chunks are shared", () => {
  const data = pseudoRandom(500_000, 3);
  const edited = new Uint8Array(data.byteLength + 10);
  edited.set(data.subarray(0, 100_000));
  edited.set(new Uint8Array(10).fill(42), 100_000);
  edited.set(data.subarray(100_000), 100_010);
  const key = (c: Uint8Array) => Array.from(c.subarray(0, 32)).join(",") + `/${c.byteLength}`;
  const a = new Set(chunkAll(data, 9999).map(key));
  const b = chunkAll(edited, 9999).map(key);
  const shared = b.filter((k) => a.has(k)).length;
  assert.ok(shared >= b.length - 3, `only ${shared} of ${b.length} chunks shared`);
});

Deno.test("fastcdc of constant data cuts at max size", () => {
  const chunks = chunkAll(new Uint8Array(50_000), 1000);
  assert.deepEqual(sizes(chunks), [16384, 16384, 16384, 50_000 - 3 * 16384]);
});

Deno.test("fastCdcStream re-splits a stream and rejects bad sizes", async () => {
  const data = pseudoRandom(100_000, 5);
  const out: Uint8Array[] = [];
  await ReadableStream.from([data.subarray(0, 5000), data.subarray(5000)]).pipeThrough(fastCdcStream(OPTS))
    .pipeTo(new WritableStream({ write: (c) => void out.push(c) }));
  assert.deepEqual(sizes(out), sizes(chunkAll(data, 100_000)));
  assert.throws(() => new FastCdc({ minSize: 10, normalSize: 5, maxSize: 20 }), /Invalid chunk sizes/);
});
