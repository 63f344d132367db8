/**
 * `memory` store: values held in process memory, evicted least-recently-used by NativeLink's
 * `eviction_policy` (`max_bytes`, `evict_bytes`, `max_seconds`, `max_count`).
 *
 * @example
 * ```ts
 * import { createMemoryStore } from "./memory_store.ts";
 * const ac = createMemoryStore({ evictionPolicy: { maxBytes: 100e6, evictBytes: 10e6, maxSeconds: 0, maxCount: 0 } });
 * ```
 * @module
 */
import { CairnError } from "../util/error.ts";
import { type EvictionPolicy, LruIndex, NO_EVICTION } from "../util/lru.ts";
import { forEachChunk } from "../util/streams.ts";
import {
  beginUpload,
  emptyStream,
  evictionPolicyFrom,
  type GetBytesOptions,
  keyId,
  notFoundError,
  resolveRange,
  tooLargeError,
} from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreUsage, UploadSize, WriteOptions } from "./types.ts";

/** Settings of {@linkcode MemoryStore}. */
export interface MemoryStoreOptions {
  readonly evictionPolicy?: EvictionPolicy;
  /** Millisecond clock (tests). */
  readonly now?: () => number;
}

/** Chunk size of read streams (zero-copy views of the stored bytes). */
const READ_CHUNK = 256 * 1024;

/** Values are kept in segments of at most this size (no huge contiguous allocations). */
const SEGMENT = 1 << 20;

/** An in-memory store with LRU eviction. */
export class MemoryStore implements StoreDriver {
  readonly kind = "memory";
  #index: LruIndex<{ key: StoreKey; segments: Uint8Array[]; size: number }>;

  constructor(options: MemoryStoreOptions = {}) {
    this.#index = new LruIndex(
      options.evictionPolicy ?? NO_EVICTION,
      options.now ? { now: options.now } : {},
    );
  }

  usage(): StoreUsage {
    return { bytes: this.#index.bytes, count: this.#index.size, maxBytes: this.#index.policy.maxBytes };
  }

  /** Number of stored values. */
  get count(): number {
    return this.#index.size;
  }

  /** Sum of stored bytes. */
  get bytes(): number {
    return this.#index.bytes;
  }

  hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    // A key found counts as used (REAPI: FindMissingBlobs and GetActionResult extend referenced blobs' lives).
    return Promise.resolve(keys.map((k) => this.#index.get(keyId(k))?.size));
  }

  read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    const entry = this.#index.get(keyId(key));
    if (!entry) return Promise.reject(notFoundError(this.kind, key));
    try {
      options?.signal?.throwIfAborted();
      const { start, end } = resolveRange(key, entry.size, options);
      if (start === end) return Promise.resolve(emptyStream());
      return Promise.resolve(segmentStream(entry.segments, start, end));
    } catch (err) {
      return Promise.reject(CairnError.from(err));
    }
  }

  /** A small value without a stream: a view of the stored bytes when they are one segment, else a copy. */
  readBytes(key: StoreKey, options: GetBytesOptions): Promise<Uint8Array> {
    const entry = this.#index.get(keyId(key));
    if (!entry) return Promise.reject(notFoundError(this.kind, key));
    try {
      options.signal?.throwIfAborted();
      const { start, end } = resolveRange(key, entry.size, options);
      if (end - start > options.maxSize) throw tooLargeError(key, end - start, options.maxSize);
      const first = entry.segments[0];
      if (entry.segments.length === 1 && first !== undefined) {
        return Promise.resolve(first.subarray(start, end));
      }
      const out = new Uint8Array(end - start);
      let base = 0;
      for (const seg of entry.segments) {
        const from = Math.max(start - base, 0);
        const to = Math.min(end - base, seg.byteLength);
        if (from < to) out.set(seg.subarray(from, to), base + from - start);
        base += seg.byteLength;
      }
      return Promise.resolve(out);
    } catch (err) {
      return Promise.reject(CairnError.from(err));
    }
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    const budget = await beginUpload(key, data, size);
    const { exact, limit } = budget;
    // Copy into our own segments: producers may reuse their buffers.
    const segments: Uint8Array[] = [];
    let current = new Uint8Array(0);
    let used = 0;
    let count = 0;
    let nextSize = 64 * 1024;
    await forEachChunk(data, (chunk) => {
      budget.add(chunk.byteLength);
      let pos = 0;
      while (pos < chunk.byteLength) {
        if (used === current.byteLength) {
          if (used > 0) segments.push(current);
          const room = limit - count - pos;
          const want = exact !== undefined ? SEGMENT : Math.max(nextSize, chunk.byteLength - pos);
          current = new Uint8Array(Math.min(room, want, SEGMENT));
          nextSize = Math.min(nextSize * 2, SEGMENT);
          used = 0;
        }
        const n = Math.min(chunk.byteLength - pos, current.byteLength - used);
        current.set(chunk.subarray(pos, pos + n), used);
        used += n;
        pos += n;
      }
      count += chunk.byteLength;
    }, options?.signal);
    budget.finish();
    if (used > 0) segments.push(used === current.byteLength ? current : current.slice(0, used));
    this.#index.set(keyId(key), { key, segments, size: count }, count);
  }

  delete(key: StoreKey): Promise<boolean> {
    return Promise.resolve(this.#index.delete(keyId(key)) !== undefined);
  }

  async *list(): AsyncIterable<StoreKey> {
    for (const e of [...this.#index.entries()]) yield e.value.key;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Streams bytes `[start, end)` of a segmented value (zero-copy views). */
function segmentStream(
  segments: readonly Uint8Array[],
  start: number,
  end: number,
): ReadableStream<Uint8Array> {
  let index = 0;
  let base = 0; // offset of segments[index] in the value
  while (index < segments.length && base + segments[index]!.byteLength <= start) {
    base += segments[index]!.byteLength;
    index++;
  }
  let pos = start;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const seg = segments[index];
      if (pos >= end || !seg) {
        controller.close();
        return;
      }
      const from = pos - base;
      const to = Math.min(seg.byteLength, end - base, from + READ_CHUNK);
      controller.enqueue(seg.subarray(from, to));
      pos = base + to;
      if (to === seg.byteLength) {
        base += seg.byteLength;
        index++;
      }
      if (pos >= end) controller.close();
    },
  }, { highWaterMark: 0 });
}

/** Creates a {@linkcode MemoryStore}. */
export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStore(options);
}

/** Registry factory for `{ memory: { eviction_policy } }`. */
export const memoryStoreFactory: StoreFactory<"memory"> = (fields, ctx) => {
  const evictionPolicy = evictionPolicyFrom(fields, ctx);
  return new MemoryStore(ctx.options.now ? { evictionPolicy, now: ctx.options.now } : { evictionPolicy });
};
