/**
 * `dedup` store: splits values into content-defined chunks (FastCDC), stores each chunk once in
 * `content_store` under its SHA-256 digest, and keeps per value an index (the list of chunk digests) in
 * `index_store` under the value's key. Values that share most of their bytes share most of their chunks.
 *
 * Index layout (little-endian): `"CDX1"`, u32 chunk count, u64 total size, then per chunk 32 bytes of
 * SHA-256 and a u32 size. Reads fetch chunks in order with a bounded prefetch
 * (`max_concurrent_fetch_per_get`) and skip whole chunks before a range's start.
 *
 * @example
 * ```ts
 * import { createDedupStore } from "./dedup_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { getBytes, putBytes } from "./helpers.ts";
 * const indexStore = createMemoryStore();
 * const contentStore = createMemoryStore();
 * const cas = createDedupStore(indexStore, contentStore, { minSize: 65536, normalSize: 262144, maxSize: 524288 });
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * await putBytes(cas, digest, bytes);
 * console.log(new TextDecoder().decode(await getBytes(cas, digest, { maxSize: 1024 }))); // hello
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { type Digest, digestOf } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { FastCdc } from "../util/fastcdc.ts";
import { bytesStream, cancelled, collectBytes, forEachChunk } from "../util/streams.ts";
import {
  beginUpload,
  closeAll,
  deleteIn,
  emptyStream,
  getBytes,
  initAll,
  isDigestKey,
  keyToString,
  listIn,
  notFoundError,
  resolveRange,
  transformedWriteOptions,
} from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreLookup, UploadSize, WriteOptions } from "./types.ts";

/** Settings of {@linkcode DedupStore}. */
export interface DedupOptions {
  /** Smallest chunk (default 64 KiB). */
  readonly minSize?: number;
  /** Chunk size aimed at (default 256 KiB). */
  readonly normalSize?: number;
  /** Largest chunk (default 512 KiB). */
  readonly maxSize?: number;
  /** Chunks fetched ahead per read (default 10). */
  readonly maxConcurrentFetchPerGet?: number;
}

const INDEX_MAGIC = 0x31584443; // "CDX1"
const INDEX_HEADER = 16;
const ENTRY_SIZE = 36;
/** Chunk uploads in flight per write. */
const UPLOAD_CONCURRENCY = 4;

/** A decoded index: chunk digests in order and the total size. */
interface DedupIndex {
  readonly chunks: Digest[];
  readonly size: number;
}

function encodeIndex(chunks: readonly Digest[], size: number): Uint8Array {
  const out = new Uint8Array(INDEX_HEADER + chunks.length * ENTRY_SIZE);
  const v = new DataView(out.buffer);
  v.setUint32(0, INDEX_MAGIC, true);
  v.setUint32(4, chunks.length, true);
  v.setBigUint64(8, BigInt(size), true);
  chunks.forEach((c, i) => {
    const at = INDEX_HEADER + i * ENTRY_SIZE;
    out.set(Buffer.from(c.hash, "hex"), at);
    v.setUint32(at + 32, c.size, true);
  });
  return out;
}

function decodeIndex(key: StoreKey, bytes: Uint8Array): DedupIndex {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = () => new CairnError(Code.DataLoss, `Cannot read ${keyToString(key)}: corrupt dedup index`);
  if (bytes.byteLength < INDEX_HEADER || v.getUint32(0, true) !== INDEX_MAGIC) throw bad();
  const count = v.getUint32(4, true);
  const size = Number(v.getBigUint64(8, true));
  if (bytes.byteLength !== INDEX_HEADER + count * ENTRY_SIZE) throw bad();
  const chunks: Digest[] = [];
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const at = INDEX_HEADER + i * ENTRY_SIZE;
    const chunkSize = v.getUint32(at + 32, true);
    chunks.push({ hash: Buffer.from(bytes.subarray(at, at + 32)).toString("hex"), size: chunkSize });
    sum += chunkSize;
  }
  if (sum !== size) throw bad();
  return { chunks, size };
}

const isNotFound = (err: unknown) => err instanceof CairnError && err.code === Code.NotFound;

/** A content-defined deduplicating store. */
export class DedupStore implements StoreDriver {
  readonly kind = "dedup";
  readonly #index: StoreDriver;
  readonly #content: StoreDriver;
  readonly #cdc: { minSize: number; normalSize: number; maxSize: number };
  readonly #prefetch: number;

  constructor(index: StoreDriver, content: StoreDriver, options: DedupOptions = {}) {
    this.#index = index;
    this.#content = content;
    this.#cdc = {
      minSize: options.minSize || 64 * 1024,
      normalSize: options.normalSize || 256 * 1024,
      maxSize: options.maxSize || 512 * 1024,
    };
    new FastCdc(this.#cdc); // validates the sizes
    this.#prefetch = Math.max(1, options.maxConcurrentFetchPerGet || 10);
  }

  /** The largest index a value of `size` bytes can have (chunks are at least `minSize`, but never empty). */
  #indexLimit(size: number): number {
    return INDEX_HEADER + (Math.ceil(size / this.#cdc.minSize) + 1) * ENTRY_SIZE;
  }

  async #readIndex(key: StoreKey): Promise<DedupIndex> {
    const limit = this.#indexLimit(isDigestKey(key) ? key.size : Number.MAX_SAFE_INTEGER / 2);
    // Not getBytes: a digest key announces the value's size, not the (much smaller) index's.
    const bytes = await collectBytes(
      await this.#index.read(key),
      Math.min(limit, 256 << 20),
      keyToString(key),
    );
    return decodeIndex(key, bytes);
  }

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const indexes = await Promise.all(keys.map(async (key) => {
      try {
        return await this.#readIndex(key);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    }));
    const unique = new Map<string, Digest>();
    for (const index of indexes) for (const c of index?.chunks ?? []) unique.set(keyToString(c), c);
    const digests = [...unique.values()];
    const sizes = digests.length ? await this.#content.hasMany(digests) : [];
    const present = new Set(digests.filter((_, i) => sizes[i] !== undefined).map(keyToString));
    return indexes.map((index) =>
      index && index.chunks.every((c) => present.has(keyToString(c))) ? index.size : undefined
    );
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    const budget = await beginUpload(key, data, size);
    const cdc = new FastCdc(this.#cdc);
    const chunks: Digest[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    const store = async (chunk: Uint8Array) => {
      const d = digestOf(chunk);
      chunks.push(d);
      const p = (async () => {
        const [have] = await this.#content.hasMany([d]);
        if (have === undefined) {
          await this.#content.write(
            d,
            bytesStream(chunk),
            { exact: d.size },
            transformedWriteOptions(options),
          );
        }
      })().catch((err) => void (failure ??= err)).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= UPLOAD_CONCURRENCY) await Promise.race(inflight);
      if (failure !== undefined) throw failure;
    };
    try {
      await forEachChunk(data, async (piece) => {
        budget.add(piece.byteLength);
        for (const chunk of cdc.push(piece)) await store(chunk);
      }, options?.signal);
      budget.finish();
      for (const chunk of cdc.finish()) await store(chunk);
    } finally {
      await Promise.all(inflight);
    }
    if (failure !== undefined) throw CairnError.from(failure);
    const count = budget.count;
    const index = encodeIndex(chunks, count);
    const announced = isDigestKey(key) ? Math.max(index.byteLength, key.size) : index.byteLength;
    await this.#index.write(key, bytesStream(index), { max: announced }, transformedWriteOptions(options));
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    if (options?.signal?.aborted) throw cancelled(options.signal, `Read of ${keyToString(key)}`);
    let index: DedupIndex;
    try {
      index = await this.#readIndex(key);
    } catch (err) {
      if (isNotFound(err)) throw notFoundError(this.kind, key);
      throw err;
    }
    const { start, end } = resolveRange(key, index.size, options);
    if (start === end) return emptyStream();
    // First chunk overlapping the range, and the offset of that chunk.
    let i = 0;
    let pos = 0;
    while (pos + index.chunks[i]!.size <= start) pos += index.chunks[i++]!.size;
    const controller = new AbortController();
    const signal = options?.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    const queue: { promise: Promise<Uint8Array>; chunkStart: number }[] = [];
    let next = i;
    let nextPos = pos;
    const fill = () => {
      while (queue.length < this.#prefetch && next < index.chunks.length && nextPos < end) {
        const d = index.chunks[next++]!;
        const promise = getBytes(this.#content, d, { maxSize: d.size, signal }).catch((err) => {
          throw isNotFound(err)
            ? new CairnError(
              Code.NotFound,
              `Cannot read ${keyToString(key)}: chunk ${keyToString(d)} is missing`,
            )
            : err;
        });
        promise.catch(() => {});
        queue.push({ promise, chunkStart: nextPos });
        nextPos += d.size;
      }
    };
    fill();
    return new ReadableStream<Uint8Array>({
      async pull(ctl) {
        const item = queue.shift();
        if (!item) {
          ctl.close();
          return;
        }
        const bytes = await item.promise;
        const from = Math.max(0, start - item.chunkStart);
        const to = Math.min(bytes.byteLength, end - item.chunkStart);
        fill();
        ctl.enqueue(bytes.subarray(from, to));
        if (queue.length === 0) ctl.close();
      },
      cancel(reason) {
        controller.abort(reason);
      },
    }, { highWaterMark: 0 });
  }

  delete(key: StoreKey): Promise<boolean> {
    return deleteIn(this.#index, key); // chunks may be shared; they age out of the content store
  }

  list(): AsyncIterable<StoreKey> {
    return listIn(this.#index);
  }

  init(stores: StoreLookup): Promise<void> {
    return initAll([this.#index, this.#content], stores);
  }

  close(): Promise<void> {
    return closeAll([this.#index, this.#content]);
  }
}

/** Creates a {@linkcode DedupStore}. */
export function createDedupStore(
  index: StoreDriver,
  content: StoreDriver,
  options: DedupOptions = {},
): DedupStore {
  return new DedupStore(index, content, options);
}

/** Registry factory for `{ dedup: { index_store, content_store, min_size?, normal_size?, max_size?, … } }`. */
export const dedupStoreFactory: StoreFactory<"dedup"> = (fields, ctx) => {
  if (fields.index_store === undefined) throw ctx.error("index_store is missing");
  if (fields.content_store === undefined) throw ctx.error("content_store is missing");
  const minSize = ctx.number(fields, "min_size", 0) || 64 * 1024;
  const normalSize = ctx.number(fields, "normal_size", 0) || 256 * 1024;
  const maxSize = ctx.number(fields, "max_size", 0) || 512 * 1024;
  if (!(minSize <= normalSize && normalSize <= maxSize)) {
    throw ctx.error(`need min_size <= normal_size <= max_size, got ${minSize}, ${normalSize}, ${maxSize}`);
  }
  return new DedupStore(
    ctx.build(fields.index_store, "index_store"),
    ctx.build(fields.content_store, "content_store"),
    {
      minSize,
      normalSize,
      maxSize,
      maxConcurrentFetchPerGet: ctx.number(fields, "max_concurrent_fetch_per_get", 10),
    },
  );
};
