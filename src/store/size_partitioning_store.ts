/**
 * `size_partitioning` store: digests smaller than `size` go to `lower_store`, the rest to `upper_store`.
 * Action-cache keys are partitioned on the action digest's size, as in NativeLink (not on the stored
 * ActionResult's length, which the key does not know). String keys are refused (as in NativeLink): they
 * have no size to partition on.
 *
 * @example
 * ```ts
 * import { createSizePartitioningStore } from "./size_partitioning_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { getBytes, putBytes } from "./helpers.ts";
 * const smallBlobs = createMemoryStore();
 * const bigBlobs = createMemoryStore();
 * const cas = createSizePartitioningStore(1 << 20, smallBlobs, bigBlobs);
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * await putBytes(cas, digest, bytes);
 * console.log(new TextDecoder().decode(await getBytes(cas, digest, { maxSize: 1024 }))); // hello
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";
import { closeAll, deleteIn, getBytes, initAll, keyToString, listIn, routingDigest } from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreLookup, UploadSize, WriteOptions } from "./types.ts";
import type { Digest } from "../digest/digest.ts";

/** Routes each digest to one of two stores by its size. */
export class SizePartitioningStore implements StoreDriver {
  readonly kind = "size_partitioning";
  readonly #size: number;
  readonly #lower: StoreDriver;
  readonly #upper: StoreDriver;

  constructor(size: number, lower: StoreDriver, upper: StoreDriver) {
    this.#size = size;
    this.#lower = lower;
    this.#upper = upper;
  }

  /** The digest `key` is partitioned on (an AC key's action digest); INVALID_ARGUMENT for string keys. */
  #digest(key: StoreKey): Digest {
    const digest = routingDigest(key);
    if (digest === undefined) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot use key "${
          keyToString(key)
        }" with a size_partitioning store: it only supports digest and action-cache keys`,
      );
    }
    return digest;
  }

  #storeFor(key: StoreKey): StoreDriver {
    return this.#digest(key).size < this.#size ? this.#lower : this.#upper;
  }

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const lowerIdx: number[] = [];
    const upperIdx: number[] = [];
    keys.forEach((k, i) => (this.#digest(k).size < this.#size ? lowerIdx : upperIdx).push(i));
    const [lower, upper] = await Promise.all([
      lowerIdx.length ? this.#lower.hasMany(lowerIdx.map((i) => keys[i]!)) : [],
      upperIdx.length ? this.#upper.hasMany(upperIdx.map((i) => keys[i]!)) : [],
    ]);
    const out = new Array<number | undefined>(keys.length);
    lowerIdx.forEach((i, j) => (out[i] = lower[j]));
    upperIdx.forEach((i, j) => (out[i] = upper[j]));
    return out;
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    return await this.#storeFor(key).read(key, options);
  }

  /** The partition's shortcut for small values, if it has one. */
  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    return await getBytes(this.#storeFor(key), key, options);
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    let store: StoreDriver;
    try {
      store = this.#storeFor(key);
    } catch (err) {
      await data.cancel(err).catch(() => {});
      throw err;
    }
    await store.write(key, data, size, options);
  }

  async delete(key: StoreKey): Promise<boolean> {
    return await deleteIn(this.#storeFor(key), key);
  }

  async *list(): AsyncIterable<StoreKey> {
    for (const store of [this.#lower, this.#upper]) {
      for await (const key of listIn(store)) {
        const digest = routingDigest(key);
        if (digest !== undefined && (digest.size < this.#size) === (store === this.#lower)) yield key;
      }
    }
  }

  init(stores: StoreLookup): Promise<void> {
    return initAll([this.#lower, this.#upper], stores);
  }

  close(): Promise<void> {
    return closeAll([this.#lower, this.#upper]);
  }
}

/** Creates a {@linkcode SizePartitioningStore}: sizes below `size` go to `lower`. */
export function createSizePartitioningStore(
  size: number,
  lower: StoreDriver,
  upper: StoreDriver,
): SizePartitioningStore {
  return new SizePartitioningStore(size, lower, upper);
}

/** Registry factory for `{ size_partitioning: { size, lower_store, upper_store } }`. */
export const sizePartitioningStoreFactory: StoreFactory<"size_partitioning"> = (fields, ctx) => {
  const size = ctx.number(fields, "size");
  if (fields.lower_store === undefined) throw ctx.error("lower_store is missing");
  if (fields.upper_store === undefined) throw ctx.error("upper_store is missing");
  return new SizePartitioningStore(
    size,
    ctx.build(fields.lower_store, "lower_store"),
    ctx.build(fields.upper_store, "upper_store"),
  );
};
