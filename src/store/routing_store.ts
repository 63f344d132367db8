/**
 * The common part of stores that send each key to one of several stores (`shard`, `size_partitioning`): a
 * subclass says which store a key belongs to; lookups are grouped per store, reads, writes and deletes go to
 * that store, and `init`/`close` reach every store.
 *
 * @example
 * ```ts
 * import { RoutingStore } from "./routing_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import type { StoreKey } from "./types.ts";
 * class ByLength extends RoutingStore {
 *   readonly kind = "by_length";
 *   protected route(key: StoreKey): number {
 *     return String(key).length % 2;
 *   }
 * }
 * const store = new ByLength([createMemoryStore(), createMemoryStore()]);
 * console.log(await store.hasMany(["a", "bb"])); // [undefined, undefined]
 * ```
 * @module
 */
import { closeAll, deleteIn, getBytes, initAll, listIn } from "./helpers.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreLookup, UploadSize, WriteOptions } from "./types.ts";

/** A store that keeps each key in exactly one of `stores`, chosen by {@linkcode RoutingStore.route}. */
export abstract class RoutingStore implements StoreDriver {
  abstract readonly kind: string;
  /** The stores keys are routed to, by index. */
  protected readonly stores: readonly StoreDriver[];

  constructor(stores: readonly StoreDriver[]) {
    this.stores = stores;
  }

  /** Index (in `stores`) of the store that holds `key`; throws for a key this store cannot hold. */
  protected abstract route(key: StoreKey): number;

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const groups = this.stores.map(() => [] as number[]);
    keys.forEach((k, i) => groups[this.route(k)]!.push(i));
    const out = new Array<number | undefined>(keys.length);
    await Promise.all(groups.map(async (idx, s) => {
      if (idx.length === 0) return;
      const sizes = await this.stores[s]!.hasMany(idx.map((i) => keys[i]!));
      idx.forEach((i, j) => (out[i] = sizes[j]));
    }));
    return out;
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    return await this.#storeFor(key).read(key, options);
  }

  /** The routed store's shortcut for small values, if it has one. */
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

  /** Every key of every store. */
  async *list(): AsyncIterable<StoreKey> {
    for (const store of this.stores) yield* listIn(store);
  }

  init(stores: StoreLookup): Promise<void> {
    return initAll(this.stores, stores);
  }

  close(): Promise<void> {
    return closeAll(this.stores);
  }

  #storeFor(key: StoreKey): StoreDriver {
    return this.stores[this.route(key)]!;
  }
}
