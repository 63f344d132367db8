/**
 * `shard` store: spreads keys over several stores, each key always to the same one, in proportion to
 * the stores' `weight` (default 1). The choice is a 32-bit hash of the key placed on cumulative weight
 * ranges, so it is deterministic across restarts and processes.
 *
 * @example
 * ```ts
 * import { createShardStore } from "./shard_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { getBytes, putBytes } from "./helpers.ts";
 * const diskA = createMemoryStore();
 * const diskB = createMemoryStore();
 * const cas = createShardStore([{ store: diskA, weight: 2 }, { store: diskB }]);
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * await putBytes(cas, digest, bytes);
 * console.log(new TextDecoder().decode(await getBytes(cas, digest, { maxSize: 1024 }))); // hello
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { CairnError, Code } from "../util/error.ts";
import { routingDigest } from "./helpers.ts";
import type { SpecFields, StoreFactory } from "./registry.ts";
import { RoutingStore } from "./routing_store.ts";
import type { StoreDriver, StoreKey } from "./types.ts";

/** One shard and its share. */
export interface Shard {
  readonly store: StoreDriver;
  /** Relative share of keys (default 1). */
  readonly weight?: number;
}

/**
 * A 32-bit hash of a key: the digest's leading hash bits (an action-cache key's action digest, so it lands
 * where its action's CAS entry would), or SHA-256 of a string key.
 */
export function shardHash(key: StoreKey): number {
  const digest = routingDigest(key);
  if (digest === undefined) return createHash("sha256").update(key as string).digest().readUInt32LE(0);
  return parseInt(digest.hash.slice(0, 8), 16) >>> 0;
}

/** Distributes keys over weighted stores. */
export class ShardStore extends RoutingStore {
  readonly kind = "shard";
  /** Upper bound (exclusive, as a 32-bit value) of each shard's hash range. */
  readonly #bounds: number[];

  constructor(shards: readonly Shard[]) {
    if (shards.length === 0) {
      throw new CairnError(Code.InvalidArgument, "A shard store needs at least one store");
    }
    const weights = shards.map((s) => s.weight ?? 1);
    if (weights.some((w) => !(w > 0))) {
      throw new CairnError(Code.InvalidArgument, "Shard weights must be positive");
    }
    super(shards.map((s) => s.store));
    const total = weights.reduce((a, b) => a + b, 0);
    let sum = 0;
    this.#bounds = weights.map((w) => Math.floor(((sum += w) / total) * 2 ** 32));
    this.#bounds[this.#bounds.length - 1] = 2 ** 32;
  }

  /** Index of the shard that holds `key`. */
  shardIndex(key: StoreKey): number {
    const h = shardHash(key);
    let i = 0;
    while (h >= this.#bounds[i]!) i++;
    return i;
  }

  protected route(key: StoreKey): number {
    return this.shardIndex(key);
  }
}

/** Creates a {@linkcode ShardStore}. */
export function createShardStore(shards: readonly Shard[]): ShardStore {
  return new ShardStore(shards);
}

/** Registry factory for `{ shard: { stores: [{ store, weight? }] } }`. */
export const shardStoreFactory: StoreFactory<"shard"> = (fields, ctx) => {
  const list = fields.stores;
  if (!Array.isArray(list) || list.length === 0) {
    throw ctx.error("stores must be a non-empty list of { store, weight? }");
  }
  const shards = list.map((entry: unknown, i): Shard => {
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw ctx.error(`stores[${i}] must be an object`);
    }
    const e = entry as SpecFields;
    for (const k of Object.keys(e)) {
      if (k !== "store" && k !== "weight") {
        throw ctx.error(`unknown stores[${i}] field "${k}"; valid fields are store, weight`);
      }
    }
    const weight = ctx.number(e, "weight", 1);
    if (weight === 0) throw ctx.error(`stores[${i}].weight must be positive`);
    if (e.store === undefined) throw ctx.error(`stores[${i}].store is missing`);
    return { store: ctx.build(e.store, `stores[${i}].store`), weight };
  });
  return new ShardStore(shards);
};
