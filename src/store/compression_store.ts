/**
 * `compression` store: LZ4-compresses values in fixed-size blocks before handing them to its backend, and
 * decompresses on the way out. Ranged reads seek straight to the first needed block through an index kept
 * at the end of the stored value, so only the blocks covering the range are read and decompressed.
 *
 * Stored layout (all integers little-endian):
 *
 * ```text
 * header   "CZL4" u8 version=1, 3 reserved, u32 block_size, u32 reserved          (16 bytes)
 * blocks   per block: u32 (bit 31 = stored raw, bits 0-30 = stored length), payload
 * end      u32 0
 * index    (block_count + 1) × u64: offset of each block (the last one = offset of the end marker)
 * trailer  u64 index_offset, u64 uncompressed_size, u32 block_count, "CZLE"        (24 bytes)
 * ```
 *
 * Every block but the last holds exactly `block_size` uncompressed bytes, so block `i` starts at
 * uncompressed offset `i × block_size`. A block that LZ4 does not shrink is stored raw.
 *
 * @example
 * ```ts
 * import { createCompressionStore } from "./compression_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * const store = createCompressionStore(createMemoryStore(), { blockSize: 64 * 1024 });
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { compressSync, uncompressSync } from "lz4-napi";
import { CairnError, Code } from "../util/error.ts";
import { cancelled, collectBytes, sliceStream, type UploadBudget } from "../util/streams.ts";
import {
  beginUpload,
  emptyStream,
  isDigestKey,
  keyToString,
  notFoundError,
  resolveRange,
  transformedWriteOptions,
  WrapperStore,
} from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** Settings of {@linkcode CompressionStore}. */
export interface CompressionStoreOptions {
  /** Uncompressed bytes per block (default 64 KiB). */
  readonly blockSize?: number;
  /** Largest block size a stored value may declare (default: `blockSize`). Guards memory on reads. */
  readonly maxDecodeBlockSize?: number;
}

const HEADER_MAGIC = 0x344c5a43; // "CZL4" little-endian
const TRAILER_MAGIC = 0x454c5a43; // "CZLE" little-endian
const VERSION = 1;
const HEADER_SIZE = 16;
const TRAILER_SIZE = 24;
const RAW_FLAG = 0x80000000;
const LENGTH_MASK = 0x7fffffff;
const DEFAULT_BLOCK_SIZE = 64 * 1024;

/** The largest stored size of a value of `size` uncompressed bytes. */
function maxStoredSize(size: number, blockSize: number): number {
  const blocks = Math.ceil(size / blockSize);
  return HEADER_SIZE + blocks * 4 + size + 4 + (blocks + 1) * 8 + TRAILER_SIZE;
}

function dataLoss(key: StoreKey, what: string): CairnError {
  return new CairnError(Code.DataLoss, `Cannot decompress ${keyToString(key)}: ${what}`);
}

/** Parsed header + trailer of a stored value. */
interface Layout {
  readonly blockSize: number;
  readonly indexOffset: number;
  readonly size: number;
  readonly blockCount: number;
}

/** An LZ4 block-compressing wrapper store. */
export class CompressionStore extends WrapperStore {
  override readonly kind = "compression";
  readonly #blockSize: number;
  readonly #maxDecodeBlockSize: number;

  constructor(inner: StoreDriver, options: CompressionStoreOptions = {}) {
    super(inner);
    this.#blockSize = options.blockSize || DEFAULT_BLOCK_SIZE;
    this.#maxDecodeBlockSize = options.maxDecodeBlockSize || this.#blockSize;
    if (!Number.isSafeInteger(this.#blockSize) || this.#blockSize > LENGTH_MASK - 8) {
      throw new CairnError(Code.InvalidArgument, `Invalid compression block_size ${this.#blockSize}`);
    }
  }

  override async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const stored = await this.inner.hasMany(keys);
    return await Promise.all(stored.map(async (size, i) => {
      const key = keys[i]!;
      if (size === undefined) return undefined;
      if (isDigestKey(key)) return key.size;
      try {
        return (await this.#layout(key, size)).size;
      } catch (err) {
        if (err instanceof CairnError && err.code === Code.NotFound) return undefined;
        throw err;
      }
    }));
  }

  override async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    const budget = await beginUpload(key, data, size);
    const compressed = pullThrough(data, compressor(this.#blockSize, budget));
    await this.inner.write(
      key,
      compressed,
      { max: maxStoredSize(budget.limit, this.#blockSize) },
      transformedWriteOptions(options),
    );
  }

  override async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    const offset = options?.offset ?? 0;
    const signal = options?.signal;
    if (signal?.aborted) throw cancelled(signal, `Read of ${keyToString(key)}`);
    if (offset === 0) {
      // From the start: one sequential read, stopping at the end marker (or once `length` bytes are out).
      if (options?.length === 0) {
        await this.#mustExist(key);
        return emptyStream();
      }
      const stored = await this.inner.read(key, signal ? { signal } : {});
      const d = decompressor(key, this.#maxDecodeBlockSize, undefined);
      const out = pullThrough(stored, d.step, d.isDone);
      return options?.length === undefined ? out : out.pipeThrough(sliceStream(0, options.length));
    }
    const [storedSize] = await this.inner.hasMany([key]);
    if (storedSize === undefined) throw notFoundError(this.kind, key);
    const layout = await this.#layout(key, storedSize);
    const { start, end } = resolveRange(key, layout.size, options);
    if (start === end) return emptyStream();
    const bs = layout.blockSize;
    const first = Math.floor(start / bs);
    const last = Math.floor((end - 1) / bs);
    const [from, to] = await this.#blockOffsets(key, layout, first, last + 1);
    const stored = await this.inner.read(key, {
      offset: from,
      length: to - from,
      ...(signal ? { signal } : {}),
    });
    return pullThrough(stored, decompressor(key, this.#maxDecodeBlockSize, bs).step).pipeThrough(
      sliceStream(start - first * bs, end - start),
    );
  }

  async #mustExist(key: StoreKey): Promise<void> {
    const [size] = await this.inner.hasMany([key]);
    if (size === undefined) throw notFoundError(this.kind, key);
  }

  /** Reads and checks the header and trailer of a stored value. */
  async #layout(key: StoreKey, storedSize: number): Promise<Layout> {
    if (storedSize < HEADER_SIZE + 4 + 8 + TRAILER_SIZE) {
      throw dataLoss(key, `stored value of ${storedSize} bytes is too short`);
    }
    const [head, tail] = await Promise.all([
      this.#readBytes(key, 0, HEADER_SIZE),
      this.#readBytes(key, storedSize - TRAILER_SIZE, TRAILER_SIZE),
    ]);
    const h = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const t = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    if (h.getUint32(0, true) !== HEADER_MAGIC || h.getUint8(4) !== VERSION) throw dataLoss(key, "bad header");
    if (t.getUint32(20, true) !== TRAILER_MAGIC) throw dataLoss(key, "bad trailer");
    const blockSize = h.getUint32(8, true);
    if (blockSize === 0 || blockSize > this.#maxDecodeBlockSize) {
      throw dataLoss(
        key,
        `block size ${blockSize} exceeds max_decode_block_size ${this.#maxDecodeBlockSize}`,
      );
    }
    const layout = {
      blockSize,
      indexOffset: Number(t.getBigUint64(0, true)),
      size: Number(t.getBigUint64(8, true)),
      blockCount: t.getUint32(16, true),
    };
    if (
      layout.indexOffset + (layout.blockCount + 1) * 8 + TRAILER_SIZE !== storedSize ||
      Math.ceil(layout.size / blockSize) !== layout.blockCount
    ) {
      throw dataLoss(key, "inconsistent trailer");
    }
    return layout;
  }

  /** Stored offsets of blocks `a` and `b` (from the index). */
  async #blockOffsets(key: StoreKey, layout: Layout, a: number, b: number): Promise<[number, number]> {
    const at = (i: number) => layout.indexOffset + i * 8;
    const entry = (bytes: Uint8Array, pos: number) =>
      Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(pos, true));
    if (b - a <= 512) {
      const span = await this.#readBytes(key, at(a), (b - a + 1) * 8);
      return [entry(span, 0), entry(span, (b - a) * 8)];
    }
    const [x, y] = await Promise.all([this.#readBytes(key, at(a), 8), this.#readBytes(key, at(b), 8)]);
    return [entry(x, 0), entry(y, 0)];
  }

  async #readBytes(key: StoreKey, offset: number, length: number): Promise<Uint8Array> {
    const bytes = await collectBytes(
      await this.inner.read(key, { offset, length }),
      length,
      keyToString(key),
    );
    if (bytes.byteLength !== length) throw dataLoss(key, "stored value is truncated");
    return bytes;
  }
}

/** One processing step: called per chunk, then once with `undefined` at the end; emits through `enqueue`. */
type Step = (chunk: Uint8Array | undefined, enqueue: (out: Uint8Array) => void) => void;

/**
 * Runs `source` through `step` by pulling, without pipes: cancelling the result cancels `source` at once
 * (a pipe chain would propagate it only later), nothing is read ahead of demand, and a step that throws
 * cancels `source` too. `step` may signal an early end by returning after calling `stop`.
 */
function pullThrough(
  source: ReadableStream<Uint8Array>,
  step: Step,
  stopped?: () => boolean,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        let produced = 0;
        const enqueue = (out: Uint8Array) => {
          produced++;
          controller.enqueue(out);
        };
        while (produced === 0) {
          const { done, value } = await reader.read();
          step(done ? undefined : value, enqueue);
          if (done || stopped?.()) {
            if (!done) await reader.cancel();
            reader.releaseLock();
            controller.close();
            return;
          }
        }
      } catch (err) {
        await reader.cancel(err).catch(() => {});
        throw err;
      }
    },
    async cancel(reason) {
      await reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** A step producing the stored layout from uncompressed bytes, counting them against `budget`. */
function compressor(blockSize: number, budget: UploadBudget): Step {
  const block = new Uint8Array(blockSize);
  let fill = 0;
  let pos = 0; // stored bytes emitted so far
  const offsets: number[] = [];
  const emitBlock = (enqueue: (out: Uint8Array) => void) => {
    offsets.push(pos);
    const compressed = compressSync(Buffer.from(block.buffer, 0, fill));
    const raw = compressed.byteLength >= fill;
    const payloadLength = raw ? fill : compressed.byteLength;
    const out = new Uint8Array(4 + payloadLength);
    new DataView(out.buffer).setUint32(0, (raw ? RAW_FLAG : 0) | payloadLength, true);
    out.set(raw ? block.subarray(0, fill) : compressed, 4);
    enqueue(out);
    pos += out.byteLength;
    fill = 0;
  };
  return (chunk, enqueue) => {
    if (pos === 0) {
      const head = new Uint8Array(HEADER_SIZE);
      const v = new DataView(head.buffer);
      v.setUint32(0, HEADER_MAGIC, true);
      v.setUint8(4, VERSION);
      v.setUint32(8, blockSize, true);
      enqueue(head);
      pos = HEADER_SIZE;
    }
    if (chunk !== undefined) {
      budget.add(chunk.byteLength);
      let i = 0;
      while (i < chunk.byteLength) {
        const n = Math.min(blockSize - fill, chunk.byteLength - i);
        block.set(chunk.subarray(i, i + n), fill);
        fill += n;
        i += n;
        if (fill === blockSize) emitBlock(enqueue);
      }
      return;
    }
    budget.finish();
    const total = budget.count;
    if (fill > 0) emitBlock(enqueue);
    offsets.push(pos); // the end marker
    const tail = new Uint8Array(4 + offsets.length * 8 + TRAILER_SIZE);
    const v = new DataView(tail.buffer);
    offsets.forEach((o, i) => v.setBigUint64(4 + i * 8, BigInt(o), true));
    const t = 4 + offsets.length * 8;
    v.setBigUint64(t, BigInt(pos + 4), true);
    v.setBigUint64(t + 8, BigInt(total), true);
    v.setUint32(t + 16, offsets.length - 1, true);
    v.setUint32(t + 20, TRAILER_MAGIC, true);
    enqueue(tail);
  };
}

/**
 * A step from stored bytes to uncompressed bytes. With `blockSize` undefined it expects the header first
 * and stops at the end marker (`isDone()` turns true); otherwise it expects a run of whole blocks.
 */
function decompressor(
  key: StoreKey,
  maxBlockSize: number,
  blockSize: number | undefined,
): { step: Step; isDone: () => boolean } {
  const pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let bs = blockSize;
  let done = false;
  /** Removes and returns the next `n` pending bytes (a view when they lie in one chunk). */
  const take = (n: number): Uint8Array => {
    pendingBytes -= n;
    const first = pending[0]!;
    if (first.byteLength >= n) {
      if (first.byteLength === n) pending.shift();
      else pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = pending[0]!;
      const m = Math.min(c.byteLength, n - o);
      out.set(c.subarray(0, m), o);
      o += m;
      if (m === c.byteLength) pending.shift();
      else pending[0] = c.subarray(m);
    }
    return out;
  };
  /** The next little-endian u32 without consuming it (needs 4 pending bytes). */
  const peekU32 = (): number => {
    let b = pending[0]!;
    if (b.byteLength < 4) {
      b = new Uint8Array(4);
      let o = 0;
      for (const c of pending) {
        const m = Math.min(c.byteLength, 4 - o);
        b.set(c.subarray(0, m), o);
        o += m;
        if (o === 4) break;
      }
    }
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  };
  const step: Step = (chunk, enqueue) => {
    if (chunk === undefined) {
      if (!done && (blockSize === undefined || pendingBytes > 0)) {
        throw dataLoss(key, "stored value is truncated");
      }
      return;
    }
    if (done || chunk.byteLength === 0) return;
    pending.push(chunk);
    pendingBytes += chunk.byteLength;
    for (;;) {
      if (bs === undefined) {
        if (pendingBytes < HEADER_SIZE) return;
        const head = take(HEADER_SIZE);
        const v = new DataView(head.buffer, head.byteOffset, HEADER_SIZE);
        if (v.getUint32(0, true) !== HEADER_MAGIC || v.getUint8(4) !== VERSION) {
          throw dataLoss(key, "bad header");
        }
        bs = v.getUint32(8, true);
        if (bs === 0 || bs > maxBlockSize) {
          throw dataLoss(key, `block size ${bs} exceeds max_decode_block_size ${maxBlockSize}`);
        }
        continue;
      }
      if (pendingBytes < 4) return;
      const word = peekU32();
      const length = word & LENGTH_MASK;
      if (length === 0) {
        if (blockSize !== undefined) throw dataLoss(key, "unexpected end marker");
        done = true;
        return;
      }
      if (length > bs + 4) {
        throw dataLoss(key, `block of ${length} stored bytes is larger than the block size`);
      }
      if (pendingBytes < 4 + length) return;
      take(4);
      const payload = take(length);
      if (word & RAW_FLAG) {
        enqueue(payload);
        continue;
      }
      let plain: Uint8Array;
      try {
        plain = uncompressSync(payload);
      } catch (err) {
        throw new CairnError(Code.DataLoss, `Cannot decompress ${keyToString(key)}: corrupt block`, {
          cause: err,
        });
      }
      if (plain.byteLength > bs) throw dataLoss(key, "block decompresses beyond the block size");
      enqueue(plain);
    }
  };
  return { step, isDone: () => done };
}

/** Creates a {@linkcode CompressionStore} around `inner`. */
export function createCompressionStore(
  inner: StoreDriver,
  options: CompressionStoreOptions = {},
): CompressionStore {
  return new CompressionStore(inner, options);
}

/** Registry factory for `{ compression: { compression_algorithm: { lz4: {…} }, backend } }`. */
export const compressionStoreFactory: StoreFactory<"compression"> = (fields, ctx) => {
  const algorithm = ctx.object(fields, "compression_algorithm");
  if (!algorithm) throw ctx.error("compression_algorithm is missing");
  const names = Object.keys(algorithm);
  if (names.length !== 1 || names[0] !== "lz4") {
    throw ctx.error(`compression_algorithm must be { lz4: {…} }, got ${names.join(", ") || "nothing"}`);
  }
  const lz4 = ctx.object(algorithm, "lz4") ?? {};
  for (const k of Object.keys(lz4)) {
    if (k !== "block_size" && k !== "max_decode_block_size") {
      throw ctx.error(`unknown lz4 field "${k}"; valid fields are block_size, max_decode_block_size`);
    }
  }
  const blockSize = ctx.number(lz4, "block_size", 0) || DEFAULT_BLOCK_SIZE;
  const maxDecodeBlockSize = ctx.number(lz4, "max_decode_block_size", 0) || blockSize;
  if (fields.backend === undefined) throw ctx.error("backend is missing");
  return new CompressionStore(ctx.build(fields.backend, "backend"), { blockSize, maxDecodeBlockSize });
};
