/**
 * An LRU index with a byte budget, implementing NativeLink's eviction policy: `max_bytes` with an
 * `evict_bytes` low watermark, `max_seconds` since last access, and `max_count`. Zero disables a limit.
 *
 * @example
 * ```ts
 * import { LruIndex } from "./lru.ts";
 * const lru = new LruIndex<string>({ maxBytes: 100, evictBytes: 20, maxSeconds: 0, maxCount: 0 }, {
 *   onEvict: (key) => console.log("evicted", key),
 * });
 * lru.set("a", "value", 60);
 * lru.set("b", "value", 60); // over 100 bytes: evicts "a" (down to at most 80)
 * ```
 * @module
 */

/** Eviction limits; 0 means "no limit" for each. */
export interface EvictionPolicy {
  /** Evict when the total exceeds this many bytes. */
  readonly maxBytes: number;
  /** Once evicting for size, continue until the total is at most `maxBytes - evictBytes`. */
  readonly evictBytes: number;
  /** Entries not accessed for this many seconds are evicted. */
  readonly maxSeconds: number;
  /** Evict when there are more entries than this. */
  readonly maxCount: number;
}

/** No limits at all. */
export const NO_EVICTION: EvictionPolicy = { maxBytes: 0, evictBytes: 0, maxSeconds: 0, maxCount: 0 };

/** One entry of the index, as listed by {@linkcode LruIndex.entries}. */
export interface LruEntry<V> {
  readonly key: string;
  readonly value: V;
  readonly bytes: number;
  /** Last access, in milliseconds of the index clock. */
  readonly accessedAt: number;
}

interface Slot<V> {
  value: V;
  bytes: number;
  accessedAt: number;
}

/** Options of {@linkcode LruIndex}. */
export interface LruOptions<V> {
  /** Millisecond clock (default `Date.now`). */
  readonly now?: () => number;
  /** Called for every entry the policy removes (not for {@linkcode LruIndex.delete}). */
  readonly onEvict?: (key: string, value: V, bytes: number) => void;
}

/** Least-recently-used index keyed by string, evicting by the {@linkcode EvictionPolicy}. */
export class LruIndex<V> {
  readonly policy: EvictionPolicy;
  #map = new Map<string, Slot<V>>();
  #bytes = 0;
  #now: () => number;
  #onEvict: ((key: string, value: V, bytes: number) => void) | undefined;

  constructor(policy: EvictionPolicy = NO_EVICTION, options: LruOptions<V> = {}) {
    this.policy = policy;
    this.#now = options.now ?? Date.now;
    this.#onEvict = options.onEvict;
  }

  /** Number of entries. */
  get size(): number {
    return this.#map.size;
  }

  /** Sum of the entries' bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The value, marking it as just used; `undefined` when absent or expired (an expired entry is evicted). */
  get(key: string): V | undefined {
    const slot = this.#live(key);
    if (!slot) return undefined;
    slot.accessedAt = this.#now();
    this.#map.delete(key);
    this.#map.set(key, slot);
    return slot.value;
  }

  /** The value without marking it as used; `undefined` when absent or expired. */
  peek(key: string): V | undefined {
    return this.#live(key)?.value;
  }

  /**
   * Inserts or replaces an entry as the most recently used (or at `accessedAt` when rebuilding an index
   * in ascending access order), then applies the policy.
   */
  set(key: string, value: V, bytes: number, accessedAt?: number): void {
    const old = this.#map.get(key);
    if (old) {
      this.#bytes -= old.bytes;
      this.#map.delete(key);
    }
    this.#map.set(key, { value, bytes, accessedAt: accessedAt ?? this.#now() });
    this.#bytes += bytes;
    this.evict();
  }

  /** Removes an entry (no eviction callback); returns its value. */
  delete(key: string): V | undefined {
    const slot = this.#map.get(key);
    if (!slot) return undefined;
    this.#map.delete(key);
    this.#bytes -= slot.bytes;
    return slot.value;
  }

  /** Applies the policy now; returns how many entries were evicted. */
  evict(): number {
    const { maxBytes, evictBytes, maxCount, maxSeconds } = this.policy;
    let evicted = 0;
    const now = this.#now();
    const oldest = maxSeconds > 0 ? now - maxSeconds * 1000 : -Infinity;
    const sizeTarget = maxBytes > 0 && this.#bytes > maxBytes ? Math.max(0, maxBytes - evictBytes) : Infinity;
    for (const [key, slot] of this.#map) {
      const overSize = this.#bytes > sizeTarget;
      const overCount = maxCount > 0 && this.#map.size > maxCount;
      const expired = slot.accessedAt < oldest;
      if (!overSize && !overCount && !expired) break;
      this.#remove(key, slot);
      evicted++;
    }
    return evicted;
  }

  /** Keys, least recently used first. */
  keys(): IterableIterator<string> {
    return this.#map.keys();
  }

  /** Entries, least recently used first. */
  *entries(): IterableIterator<LruEntry<V>> {
    for (const [key, slot] of this.#map) {
      yield { key, value: slot.value, bytes: slot.bytes, accessedAt: slot.accessedAt };
    }
  }

  #live(key: string): Slot<V> | undefined {
    const slot = this.#map.get(key);
    if (!slot) return undefined;
    const { maxSeconds } = this.policy;
    if (maxSeconds > 0 && slot.accessedAt < this.#now() - maxSeconds * 1000) {
      this.#remove(key, slot);
      return undefined;
    }
    return slot;
  }

  #remove(key: string, slot: Slot<V>): void {
    this.#map.delete(key);
    this.#bytes -= slot.bytes;
    this.#onEvict?.(key, slot.value, slot.bytes);
  }
}
