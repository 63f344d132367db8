/**
 * `existence_cache` store: remembers which digests its backend holds, so repeated `hasMany` calls (Bazel's
 * FindMissingBlobs) skip the backend. Positive answers are cached in an LRU bounded by `eviction_policy`
 * (`max_count`, `max_seconds`, `max_bytes` counting blob sizes); a successful write adds its key, and a read
 * that finds the key gone (NOT_FOUND) drops it. Only CAS digests are cached: action-cache and string keys
 * name values that change, so they always ask the backend.
 *
 * @example
 * ```ts
 * import { createExistenceCacheStore } from "./existence_cache_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { getBytes, putBytes } from "./helpers.ts";
 * const remote = createMemoryStore(); // e.g. a grpc store
 * const cas = createExistenceCacheStore(remote, { maxCount: 1_000_000, maxSeconds: 600, maxBytes: 0, evictBytes: 0 });
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * await putBytes(cas, digest, bytes);
 * console.log(new TextDecoder().decode(await getBytes(cas, digest, { maxSize: 1024 }))); // hello
 * ```
 * @module
 */
import { formatDigest } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { type EvictionPolicy, LruIndex, NO_EVICTION } from "../util/lru.ts";
import { evictionPolicyFrom, getBytes, isDigestKey, WrapperStore } from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** Caches positive existence answers of its backend. */
export class ExistenceCacheStore extends WrapperStore {
  override readonly kind = "existence_cache";
  readonly #cache: LruIndex<number>;

  constructor(inner: StoreDriver, policy: EvictionPolicy = NO_EVICTION, now?: () => number) {
    super(inner);
    this.#cache = new LruIndex<number>(policy, now ? { now } : {});
  }

  /** Number of cached keys. */
  get cachedCount(): number {
    return this.#cache.size;
  }

  override async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const out = new Array<number | undefined>(keys.length);
    const missIdx: number[] = [];
    keys.forEach((k, i) => {
      const cached = !isDigestKey(k) ? undefined : this.#cache.get(formatDigest(k));
      if (cached === undefined) missIdx.push(i);
      else out[i] = cached;
    });
    if (missIdx.length === 0) return out;
    const sizes = await this.inner.hasMany(missIdx.map((i) => keys[i]!));
    missIdx.forEach((i, j) => {
      const size = sizes[j];
      out[i] = size;
      const key = keys[i]!;
      if (size !== undefined && isDigestKey(key)) this.#cache.set(formatDigest(key), size, key.size);
    });
    return out;
  }

  override async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    try {
      return await this.inner.read(key, options);
    } catch (err) {
      if (err instanceof CairnError && err.code === Code.NotFound && isDigestKey(key)) {
        this.#cache.delete(formatDigest(key));
      }
      throw err;
    }
  }

  /** As {@linkcode read}: the backend's shortcut for small values, dropping a key found gone. */
  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    try {
      return await getBytes(this.inner, key, options);
    } catch (err) {
      if (err instanceof CairnError && err.code === Code.NotFound && isDigestKey(key)) {
        this.#cache.delete(formatDigest(key));
      }
      throw err;
    }
  }

  override async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    if (isDigestKey(key)) this.#cache.delete(formatDigest(key));
    await this.inner.write(key, data, size, options);
    if (isDigestKey(key)) this.#cache.set(formatDigest(key), key.size, key.size);
  }

  override async delete(key: StoreKey): Promise<boolean> {
    if (isDigestKey(key)) this.#cache.delete(formatDigest(key));
    return await super.delete(key);
  }
}

/** Creates an {@linkcode ExistenceCacheStore} around `inner`. */
export function createExistenceCacheStore(
  inner: StoreDriver,
  policy: EvictionPolicy = NO_EVICTION,
  now?: () => number,
): ExistenceCacheStore {
  return new ExistenceCacheStore(inner, policy, now);
}

/** Registry factory for `{ existence_cache: { backend, eviction_policy? } }`. */
export const existenceCacheStoreFactory: StoreFactory<"existence_cache"> = (fields, ctx) => {
  if (fields.backend === undefined) throw ctx.error("backend is missing");
  return new ExistenceCacheStore(
    ctx.build(fields.backend, "backend"),
    evictionPolicyFrom(fields, ctx),
    ctx.options.now,
  );
};
