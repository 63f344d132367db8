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
import { keyToString, listIn, routingDigest } from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import { RoutingStore } from "./routing_store.ts";
import type { StoreDriver, StoreKey } from "./types.ts";

/** Routes each digest to one of two stores by its size. */
export class SizePartitioningStore extends RoutingStore {
  readonly kind = "size_partitioning";
  readonly #size: number;

  constructor(size: number, lower: StoreDriver, upper: StoreDriver) {
    super([lower, upper]);
    this.#size = size;
  }

  /** 0 (lower) or 1 (upper) by the size of the digest `key` is partitioned on (an AC key's action digest). */
  protected route(key: StoreKey): number {
    const digest = routingDigest(key);
    if (digest === undefined) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot use key "${
          keyToString(key)
        }" with a size_partitioning store: it only supports digest and action-cache keys`,
      );
    }
    return digest.size < this.#size ? 0 : 1;
  }

  /** The keys each store holds on its side of the partition (a key on the wrong side is not listed). */
  override async *list(): AsyncIterable<StoreKey> {
    for (const [i, store] of this.stores.entries()) {
      for await (const key of listIn(store)) {
        const digest = routingDigest(key);
        if (digest !== undefined && (digest.size < this.#size ? 0 : 1) === i) yield key;
      }
    }
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
