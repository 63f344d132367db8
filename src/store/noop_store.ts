/**
 * `noop` store: accepts and drops every write; every key is absent.
 *
 * @example
 * ```ts
 * import { digestOf } from "../digest/digest.ts";
 * import { createNoopStore } from "./noop_store.ts";
 * const sink = createNoopStore();
 * const digest = digestOf(new TextEncoder().encode("hi"));
 * console.log(await sink.hasMany([digest])); // [undefined]
 * ```
 * @module
 */
import { forEachChunk } from "../util/streams.ts";
import { beginUpload, notFoundError } from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** A store that stores nothing. Writes still consume (and size-check) their stream. */
export class NoopStore implements StoreDriver {
  readonly kind = "noop";

  hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    return Promise.resolve(keys.map(() => undefined));
  }

  read(key: StoreKey, _options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    return Promise.reject(notFoundError(this.kind, key));
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    const budget = await beginUpload(key, data, size);
    await forEachChunk(data, (chunk) => {
      budget.add(chunk.byteLength);
    }, options?.signal);
    budget.finish();
  }

  delete(_key: StoreKey): Promise<boolean> {
    return Promise.resolve(false);
  }
}

/** Creates a {@linkcode NoopStore}. */
export function createNoopStore(): NoopStore {
  return new NoopStore();
}

/** Registry factory for `{ noop: {} }`. */
export const noopStoreFactory: StoreFactory<"noop"> = () => new NoopStore();
