/**
 * `verify` store: checks uploads to digest keys on their way into the backend — the byte count
 * (`verify_size`) and the SHA-256 (`verify_hash`). A mismatch errors the stream at its end, so the
 * backend's write fails and stores nothing (INVALID_ARGUMENT naming expected and actual).
 *
 * @example
 * ```ts
 * // { verify: { backend: { memory: {} }, verify_size: true, verify_hash: true } }
 * import { createVerifyStore } from "./verify_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * const cas = createVerifyStore(createMemoryStore(), { verifySize: true, verifyHash: true });
 * ```
 * @module
 */
import { createHasher, type DigestFunctionName, formatDigest } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { getBytes, isDigestKey, WrapperStore } from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";
import type { Digest } from "../digest/digest.ts";

/** Settings of {@linkcode VerifyStore}. */
export interface VerifyStoreOptions {
  readonly verifySize?: boolean;
  readonly verifyHash?: boolean;
  readonly hashFunction?: DigestFunctionName;
}

/** Verifies size and hash of uploads to digest keys; reads pass through. */
export class VerifyStore extends WrapperStore {
  override readonly kind = "verify";
  readonly #verifySize: boolean;
  readonly #verifyHash: boolean;
  readonly #fn: DigestFunctionName;

  constructor(inner: StoreDriver, options: VerifyStoreOptions = {}) {
    super(inner);
    this.#verifySize = options.verifySize ?? false;
    this.#verifyHash = options.verifyHash ?? false;
    this.#fn = options.hashFunction ?? "sha256";
  }

  /** Reads pass through: the backend's shortcut for small values, if it has one. */
  readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    return getBytes(this.inner, key, options);
  }

  /** The backend: reads pass through unchanged and only uploads are checked. */
  innerStore(): StoreDriver {
    return this.inner;
  }

  override write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    if (!isDigestKey(key) || (!this.#verifySize && !this.#verifyHash)) {
      return this.inner.write(key, data, size, options);
    }
    // The caller already hashes this stream with the same function and fails it on a mismatch.
    if (options?.verified === true && this.#fn === "sha256") {
      return this.inner.write(key, data, size, options);
    }
    return this.inner.write(key, this.#checked(key, data), size, options);
  }

  /**
   * `data` as the backend sees it: each chunk is counted and hashed as the backend pulls it, and the
   * end of the stream becomes an error when size or hash are wrong (so the backend stores nothing).
   * A pull-through stream rather than a TransformStream: one promise hop per chunk instead of a pipe.
   */
  #checked(key: Digest, data: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const hasher = this.#verifyHash ? createHasher(this.#fn) : undefined;
    const verifySize = this.#verifySize;
    const name = formatDigest(key);
    const reader = data.getReader();
    let count = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          reader.releaseLock();
          if (verifySize && count !== key.size) {
            throw new CairnError(
              Code.InvalidArgument,
              `Size mismatch for ${name}: expected ${key.size} bytes, got ${count}`,
            );
          }
          if (hasher) {
            const actual = hasher.digest("hex");
            if (actual !== key.hash) {
              throw new CairnError(
                Code.InvalidArgument,
                `Hash mismatch for ${name}: expected ${key.hash}, computed ${actual} over ${count} bytes`,
              );
            }
          }
          controller.close();
          return;
        }
        count += value.byteLength;
        if (verifySize && count > key.size) {
          const err = new CairnError(
            Code.InvalidArgument,
            `Size mismatch for ${name}: expected ${key.size} bytes, got at least ${count}`,
          );
          await reader.cancel(err).catch(() => {});
          throw err;
        }
        hasher?.update(value);
        controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }
}

/** Creates a {@linkcode VerifyStore} around `inner`. */
export function createVerifyStore(inner: StoreDriver, options: VerifyStoreOptions = {}): VerifyStore {
  return new VerifyStore(inner, options);
}

/** Registry factory for `{ verify: { backend, verify_size, verify_hash, hash_verification_function } }`. */
export const verifyStoreFactory: StoreFactory<"verify"> = (fields, ctx) => {
  if (fields.backend === undefined) throw ctx.error("backend is missing");
  const fn = ctx.string(fields, "hash_verification_function", "sha256").toLowerCase();
  if (fn !== "sha256") throw ctx.error(`hash_verification_function "${fn}" is not supported; use sha256`);
  const inner = ctx.build(fields.backend, "backend");
  return new VerifyStore(inner, {
    verifySize: ctx.boolean(fields, "verify_size", false),
    verifyHash: ctx.boolean(fields, "verify_hash", false),
    hashFunction: "sha256",
  });
};
