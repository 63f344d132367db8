/**
 * `fast_slow` store: a fast store (memory, local disk) in front of a slow one (remote, big disk).
 *
 * - `hasMany` asks the fast store first and the slow store only for what the fast one lacks.
 * - A read that misses the fast store streams from the slow store to the client while filling the fast store
 *   with the whole value. Concurrent misses of one key share that single slow read: later readers wait for
 *   the fill and then read the fast store. A client cancelling does not stop the fill, and a fill that fails
 *   part-way commits nothing to the fast store.
 * - Writes go to both stores (both must succeed), with backpressure from the slower one.
 * - `fast_direction` / `slow_direction` (`both`, `update`, `get`, `read_only`) restrict a store to writes
 *   (`update`), to fills from reads (`get`), or to neither (`read_only`).
 *
 * @example
 * ```ts
 * import { createFastSlowStore } from "./fast_slow_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { getBytes, putBytes } from "./helpers.ts";
 * const memoryStore = createMemoryStore();
 * const slowStore = createMemoryStore(); // e.g. a filesystem or grpc store
 * const cas = createFastSlowStore(memoryStore, slowStore, { fastDirection: "both", slowDirection: "both" });
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * await putBytes(cas, digest, bytes);
 * console.log(new TextDecoder().decode(await getBytes(cas, digest, { maxSize: 1024 }))); // hello
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";
import { cancelled, collectBytes } from "../util/streams.ts";
import {
  closeAll,
  emptyStream,
  getBytes,
  initAll,
  keyId,
  keyToString,
  notFoundError,
  resolveRange,
  sizeOfKey,
} from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreLookup, UploadSize, WriteOptions } from "./types.ts";

/** Which operations persist into a store. */
export type StoreDirection = "both" | "update" | "get" | "read_only";

const DIRECTIONS: readonly StoreDirection[] = ["both", "update", "get", "read_only"];

/** Settings of {@linkcode FastSlowStore}. */
export interface FastSlowOptions {
  readonly fastDirection?: StoreDirection;
  readonly slowDirection?: StoreDirection;
}

const isNotFound = (err: unknown) => err instanceof CairnError && err.code === Code.NotFound;

/**
 * One consumer of a pump: a stream fed chunk by chunk with backpressure (`push` resolves when the
 * consumer wants more). Cancelling the stream marks it dead and calls `onCancel`.
 */
class Channel {
  readonly stream: ReadableStream<Uint8Array>;
  alive = true;
  #ctl!: ReadableStreamDefaultController<Uint8Array>;
  #demand: (() => void) | undefined;

  constructor(onCancel?: (reason: unknown) => void) {
    this.stream = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#ctl = c;
      },
      pull: () => this.#wake(),
      cancel: (reason) => {
        this.alive = false;
        this.#wake();
        onCancel?.(reason);
      },
    }, { highWaterMark: 1 });
  }

  #wake(): void {
    const d = this.#demand;
    this.#demand = undefined;
    d?.();
  }

  /** Enqueues and waits until the consumer wants more (or has gone). */
  async push(chunk: Uint8Array): Promise<void> {
    if (!this.alive) return;
    this.#ctl.enqueue(chunk);
    if ((this.#ctl.desiredSize ?? 0) > 0) return;
    await new Promise<void>((resolve) => (this.#demand = resolve));
  }

  close(): void {
    if (!this.alive) return;
    this.alive = false;
    this.#ctl.close();
    this.#wake();
  }

  error(err: unknown): void {
    if (!this.alive) return;
    this.alive = false;
    this.#ctl.error(err);
    this.#wake();
  }
}

/** A two-tier store with single-flight fills. */
export class FastSlowStore implements StoreDriver {
  readonly kind = "fast_slow";
  readonly fast: StoreDriver;
  readonly slow: StoreDriver;
  readonly #fastDirection: StoreDirection;
  readonly #slowDirection: StoreDirection;
  /** Fills in progress, by key: resolved when the fill has ended (successfully or not). */
  readonly #fills = new Map<string, Promise<void>>();

  constructor(fast: StoreDriver, slow: StoreDriver, options: FastSlowOptions = {}) {
    this.fast = fast;
    this.slow = slow;
    this.#fastDirection = options.fastDirection ?? "both";
    this.#slowDirection = options.slowDirection ?? "both";
  }

  /** Resolves once no fill is in progress (for orderly shutdown and tests). */
  async settled(): Promise<void> {
    while (this.#fills.size > 0) await Promise.all(this.#fills.values());
  }

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const out = await this.fast.hasMany(keys);
    const missing = out.flatMap((size, i) => (size === undefined ? [i] : []));
    if (missing.length === 0) return out;
    const slow = await this.slow.hasMany(missing.map((i) => keys[i]!));
    missing.forEach((i, j) => (out[i] = slow[j]));
    return out;
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    try {
      return await this.fast.read(key, options);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return await this.#readSlow(key, options);
  }

  /** A small value: the fast store's shortcut when it holds the key, else read (and filled) as by `read`. */
  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    try {
      return await getBytes(this.fast, key, options);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return await collectBytes(await this.#readSlow(key, options), options.maxSize, keyToString(key));
  }

  /** A read the fast store missed: from the slow store, filling the fast one (single-flight). */
  async #readSlow(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    if (this.#fastDirection !== "both" && this.#fastDirection !== "get") {
      return await this.slow.read(key, options);
    }
    const id = keyId(key);
    const fill = this.#fills.get(id);
    if (fill) {
      await fill;
      try {
        return await this.fast.read(key, options);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        return await this.slow.read(key, options); // the fill failed; serve without filling
      }
    }
    return await this.#lead(key, id, options);
  }

  /** Reads the whole value from the slow store, filling the fast store and serving the client's range. */
  async #lead(key: StoreKey, id: string, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    let settle!: () => void;
    this.#fills.set(id, new Promise<void>((resolve) => (settle = resolve)));
    const done = () => {
      this.#fills.delete(id);
      settle();
    };
    let source: ReadableStream<Uint8Array>;
    let size: number;
    let range: { start: number; end: number };
    // A digest key names the original bytes, but a wrapper above (compression, dedup) may keep other bytes
    // under it (compressed, an index): their size is the slow store's to tell. A whole read needs no size
    // up front: every byte the slow store yields goes to the client.
    const ranged = (options?.offset ?? 0) !== 0 || options?.length !== undefined;
    try {
      // A CAS digest announces its size; an AC or string key's value is as long as the slow store says.
      const announced = sizeOfKey(key);
      if (announced === undefined || ranged) {
        const [s] = await this.slow.hasMany([key]);
        if (s === undefined) throw notFoundError(this.kind, key);
        size = s;
        range = resolveRange(key, size, options);
      } else {
        size = announced;
        range = { start: 0, end: Infinity };
      }
      options?.signal?.throwIfAborted();
      source = await this.slow.read(key);
    } catch (err) {
      done();
      throw CairnError.from(err);
    }
    const reader = source.getReader();
    const client = new Channel();
    const toFast = new Channel();
    const fastWrite = this.fast.write(key, toFast.stream, { exact: size }).catch(() => {});
    const signal = options?.signal;
    const onAbort = () => client.error(cancelled(signal!, `Read of ${keyToString(key)}`));
    signal?.addEventListener("abort", onAbort, { once: true });
    if (range.start === range.end) client.close();
    const pump = async () => {
      let pos = 0;
      try {
        for (;;) {
          if (!client.alive && !toFast.alive) {
            await reader.cancel();
            break;
          }
          const { done: end, value } = await reader.read();
          if (end) break;
          const from = Math.max(range.start, pos);
          const to = Math.min(range.end, pos + value.byteLength);
          pos += value.byteLength;
          await Promise.all([
            toFast.push(value),
            from < to
              ? client.push(value.subarray(from - (pos - value.byteLength), to - (pos - value.byteLength)))
              : undefined,
          ]);
          if (pos >= range.end) client.close();
        }
        toFast.close();
        client.close();
      } catch (err) {
        const e = CairnError.from(err, `Cannot read ${keyToString(key)} from the slow store`);
        toFast.error(e);
        client.error(e);
        await reader.cancel(e).catch(() => {});
      } finally {
        signal?.removeEventListener("abort", onAbort);
        await fastWrite;
        done();
      }
    };
    void pump();
    return range.start === range.end ? emptyStream() : client.stream;
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    const targets: StoreDriver[] = [];
    if (this.#fastDirection === "both" || this.#fastDirection === "update") targets.push(this.fast);
    if (this.#slowDirection === "both" || this.#slowDirection === "update") targets.push(this.slow);
    if (targets.length === 0) {
      await data.cancel().catch(() => {});
      return;
    }
    if (targets.length === 1) return await targets[0]!.write(key, data, size, options);
    // Both: feed two channels in lockstep; if either store fails, the other is failed too.
    const reader = data.getReader();
    const sibling = new CairnError(
      Code.Aborted,
      `Write of ${keyToString(key)} aborted: the other store failed`,
    );
    let failed = false;
    const failAll = (reason: unknown) => {
      if (failed) return;
      failed = true;
      for (const c of channels) c.error(sibling);
      void reader.cancel(reason).catch(() => {});
    };
    const channels = [new Channel(failAll), new Channel(failAll)];
    const writes = targets.map((t, i) => t.write(key, channels[i]!.stream, size, options));
    const pump = (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done || failed) break;
          await Promise.all(channels.map((c) => c.push(value)));
        }
        if (!failed) { for (const c of channels) c.close(); }
      } catch (err) {
        failAll(err);
        throw err;
      }
    })();
    const results = await Promise.allSettled([...writes, pump]);
    if (failed) await reader.cancel().catch(() => {});
    const errors = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (errors.length > 0) throw CairnError.from(errors.find((e) => e !== sibling) ?? errors[0]);
  }

  async delete(key: StoreKey): Promise<boolean> {
    const results = await Promise.all([this.fast.delete?.(key), this.slow.delete?.(key)]);
    return results.some((r) => r === true);
  }

  async *list(): AsyncIterable<StoreKey> {
    const seen = new Set<string>();
    for (const store of [this.fast, this.slow]) {
      if (!store.list) continue;
      for await (const key of store.list()) {
        const k = keyId(key);
        if (seen.has(k)) continue;
        seen.add(k);
        yield key;
      }
    }
  }

  init(stores: StoreLookup): Promise<void> {
    return initAll([this.fast, this.slow], stores);
  }

  async close(): Promise<void> {
    await this.settled();
    await closeAll([this.fast, this.slow]);
  }
}

/** Creates a {@linkcode FastSlowStore}. */
export function createFastSlowStore(
  fast: StoreDriver,
  slow: StoreDriver,
  options: FastSlowOptions = {},
): FastSlowStore {
  return new FastSlowStore(fast, slow, options);
}

/** Registry factory for `{ fast_slow: { fast, slow, fast_direction?, slow_direction? } }`. */
export const fastSlowStoreFactory: StoreFactory<"fast_slow"> = (fields, ctx) => {
  const direction = (field: string): StoreDirection => {
    const v = ctx.string(fields, field, "both");
    if (!DIRECTIONS.includes(v as StoreDirection)) {
      throw ctx.error(`${field} must be one of ${DIRECTIONS.join(", ")}, got "${v}"`);
    }
    return v as StoreDirection;
  };
  const fastDirection = direction("fast_direction");
  const slowDirection = direction("slow_direction");
  if (fields.fast === undefined) throw ctx.error("fast is missing");
  if (fields.slow === undefined) throw ctx.error("slow is missing");
  return new FastSlowStore(ctx.build(fields.fast, "fast"), ctx.build(fields.slow, "slow"), {
    fastDirection,
    slowDirection,
  });
};
