/**
 * Conveniences derived once for every {@linkcode StoreDriver}: whole-blob get/put for small values,
 * single-key `has`, key formatting, range checks, and {@linkcode WrapperStore}, a forwarding base for
 * stores that wrap another store.
 *
 * @example
 * ```ts
 * import { getBytes, has, putBytes } from "./helpers.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * const store = createMemoryStore();
 * await putBytes(store, "scheduler/state", new TextEncoder().encode("{}"));
 * if (await has(store, "scheduler/state") !== undefined) {
 *   const bytes = await getBytes(store, "scheduler/state", { maxSize: 1 << 20 });
 * }
 * ```
 * @module
 */
import { type Digest, formatDigest } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { bytesStream, collectBytes, UploadBudget } from "../util/streams.ts";
import { type EvictionPolicy, NO_EVICTION } from "../util/lru.ts";
import type { SpecFields, StoreBuildContext } from "./registry.ts";
import type {
  AcKey,
  ReadOptions,
  StoreDriver,
  StoreKey,
  StoreLookup,
  UploadSize,
  WriteOptions,
} from "./types.ts";

/** The action-cache key of the action with digest `actionDigest`. */
export function acKey(actionDigest: Digest): AcKey {
  return { ac: actionDigest };
}

/** True when the key is a CAS digest (a value of exactly `key.size` bytes). False for AC and string keys. */
export function isDigestKey(key: StoreKey): key is Digest {
  return typeof key !== "string" && !("ac" in key);
}

/** True when the key is an action-cache key. */
export function isAcKey(key: StoreKey): key is AcKey {
  return typeof key !== "string" && "ac" in key;
}

/**
 * The digest a key is routed on: a CAS key's own digest, an AC key's action digest, `undefined` for a
 * string key. Routing stores (`size_partitioning`, `shard`) partition on it.
 */
export function routingDigest(key: StoreKey): Digest | undefined {
  if (typeof key === "string") return undefined;
  return "ac" in key ? key.ac : key;
}

/** `hash-size` for a digest, `ac:hash-size` for an action-cache key, the string itself for a string key. */
export function keyToString(key: StoreKey): string {
  if (typeof key === "string") return key;
  return "ac" in key ? `ac:${formatDigest(key.ac)}` : formatDigest(key);
}

/**
 * An id unique across key kinds (`d:`, `a:` or `s:` before the text), for maps that hold keys of every
 * kind: a string key never collides with a digest or AC key of the same text.
 */
export function keyId(key: StoreKey): string {
  if (typeof key === "string") return `s:${key}`;
  return "ac" in key ? `a:${formatDigest(key.ac)}` : `d:${formatDigest(key)}`;
}

/** The size a key announces (a CAS digest's size), or `undefined` for AC and string keys. */
export function sizeOfKey(key: StoreKey): number | undefined {
  return isDigestKey(key) ? key.size : undefined;
}

/** The stored size of one key, or `undefined` when absent. */
export async function has(store: StoreDriver, key: StoreKey): Promise<number | undefined> {
  const [size] = await store.hasMany([key]);
  return size;
}

/** Options of {@linkcode getBytes}. */
export interface GetBytesOptions extends ReadOptions {
  /** Refuse (RESOURCE_EXHAUSTED) values larger than this many bytes. */
  readonly maxSize: number;
}

/** RESOURCE_EXHAUSTED: `bytes` of `key` are more than a caller's `maxSize` allows in memory. */
export function tooLargeError(key: StoreKey, bytes: number, maxSize: number): CairnError {
  return new CairnError(
    Code.ResourceExhausted,
    `Cannot read ${keyToString(key)} into memory: ${bytes} bytes exceeds the limit of ${maxSize}`,
  );
}

/**
 * Reads a whole small value into memory. Refuses with RESOURCE_EXHAUSTED when the value (or the
 * requested range) is larger than `maxSize`; NOT_FOUND when absent.
 */
export async function getBytes(
  store: StoreDriver,
  key: StoreKey,
  options: GetBytesOptions,
): Promise<Uint8Array> {
  const { maxSize, ...readOptions } = options;
  const announced = sizeOfKey(key);
  const wanted = announced === undefined
    ? undefined
    : Math.min(announced - Math.min(announced, options.offset ?? 0), options.length ?? Infinity);
  if (wanted !== undefined && wanted > maxSize) throw tooLargeError(key, wanted, maxSize);
  if (store.readBytes !== undefined) return await store.readBytes(key, options);
  const stream = await store.read(key, readOptions);
  return await collectBytes(stream, maxSize, keyToString(key));
}

/** Stores bytes held in memory under `key` (size `{exact: bytes.byteLength}`). */
export function putBytes(
  store: StoreDriver,
  key: StoreKey,
  bytes: Uint8Array,
  options?: WriteOptions,
): Promise<void> {
  return store.write(key, bytesStream(bytes), { exact: bytes.byteLength }, options);
}

/** The maximum number of bytes an upload may carry. */
export function uploadLimit(size: UploadSize): number {
  return "exact" in size ? size.exact : size.max;
}

/**
 * Checks an upload's announced size against a CAS digest key before any byte moves: a digest key must be
 * written with `{exact: digest.size}` (or a `max` of at least that). Throws INVALID_ARGUMENT. AC and string
 * keys take any size. Returns the exact size expected, if known.
 */
export function expectedUploadSize(key: StoreKey, size: UploadSize): number | undefined {
  if (!isDigestKey(key)) return "exact" in size ? size.exact : undefined;
  if ("exact" in size && size.exact !== key.size) {
    throw new CairnError(
      Code.InvalidArgument,
      `Size mismatch for ${formatDigest(key)}: digest says ${key.size} bytes, upload says ${size.exact}`,
    );
  }
  if ("max" in size && size.max < key.size) {
    throw new CairnError(
      Code.InvalidArgument,
      `Size mismatch for ${
        formatDigest(key)
      }: digest says ${key.size} bytes, upload allows at most ${size.max}`,
    );
  }
  // `{max}` under a digest key: a wrapper (compression, dedup) storing transformed bytes; any size up to max.
  return "exact" in size ? key.size : undefined;
}

/**
 * The preamble of every store's `write`, before any byte moves: runs `before` (the store's own checks), then
 * checks the announced size against the key ({@linkcode expectedUploadSize}); on a refusal cancels `data` (so
 * the sender stops) and rethrows. Returns the budget to count the bytes against (the exact size a digest
 * key expects, else the announced one).
 */
export async function beginUpload(
  key: StoreKey,
  data: ReadableStream<Uint8Array>,
  size: UploadSize,
  before?: () => unknown,
): Promise<UploadBudget> {
  try {
    await before?.();
    const exact = expectedUploadSize(key, size);
    return new UploadBudget(exact !== undefined ? { exact } : size, keyToString(key));
  } catch (err) {
    await data.cancel(err).catch(() => {});
    throw err;
  }
}

/** Reads NativeLink's `eviction_policy` object (`max_bytes`, `evict_bytes`, `max_seconds`, `max_count`). */
export function evictionPolicyFrom(fields: SpecFields, ctx: StoreBuildContext): EvictionPolicy {
  const p = ctx.object(fields, "eviction_policy");
  if (!p) return NO_EVICTION;
  const known = new Set(["max_bytes", "evict_bytes", "max_seconds", "max_count"]);
  for (const k of Object.keys(p)) {
    if (!known.has(k)) {
      throw ctx.error(`unknown eviction_policy field "${k}"; valid fields are ${[...known].join(", ")}`);
    }
  }
  return {
    maxBytes: ctx.number(p, "max_bytes", 0),
    evictBytes: ctx.number(p, "evict_bytes", 0),
    maxSeconds: ctx.number(p, "max_seconds", 0),
    maxCount: ctx.number(p, "max_count", 0),
  };
}

/** A resolved byte range `[start, end)` of a stored value. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * Resolves read options against a value's size: offset past the end → OUT_OF_RANGE; a negative
 * offset/length → INVALID_ARGUMENT; length beyond the end is clipped.
 */
export function resolveRange(key: StoreKey, size: number, options?: ReadOptions): ByteRange {
  const offset = options?.offset ?? 0;
  const length = options?.length;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new CairnError(Code.InvalidArgument, `Invalid read offset ${offset} for ${keyToString(key)}`);
  }
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new CairnError(Code.InvalidArgument, `Invalid read length ${length} for ${keyToString(key)}`);
  }
  if (offset > size) {
    throw new CairnError(
      Code.OutOfRange,
      `Cannot read ${keyToString(key)} at offset ${offset}: it has only ${size} bytes`,
    );
  }
  const end = length === undefined ? size : Math.min(size, offset + length);
  return { start: offset, end };
}

/** The NOT_FOUND error every store throws for an absent key. */
export function notFoundError(kind: string, key: StoreKey): CairnError {
  return new CairnError(Code.NotFound, `Cannot read ${keyToString(key)}: not found in ${kind} store`);
}

/** An empty stream (reads of zero bytes). */
export function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.close();
    },
  });
}

/** `store.delete(key)`; UNIMPLEMENTED naming the store when it has no delete. */
export async function deleteIn(store: StoreDriver, key: StoreKey): Promise<boolean> {
  if (!store.delete) {
    throw new CairnError(
      Code.Unimplemented,
      `Cannot delete ${keyToString(key)}: ${store.kind} store has no delete`,
    );
  }
  return await store.delete(key);
}

/** `store.list()`; UNIMPLEMENTED naming the store when it has no list. */
export async function* listIn(store: StoreDriver): AsyncIterable<StoreKey> {
  if (!store.list) {
    throw new CairnError(Code.Unimplemented, `Cannot list keys: ${store.kind} store has no list`);
  }
  yield* store.list();
}

/** Initializes the nested stores of a composite store, in order. */
export async function initAll(stores: readonly StoreDriver[], lookup: StoreLookup): Promise<void> {
  for (const s of stores) await s.init?.(lookup);
}

/** Closes the nested stores of a composite store, all at once. */
export async function closeAll(stores: readonly StoreDriver[]): Promise<void> {
  await Promise.all(stores.map((s) => s.close?.()));
}

/**
 * A forwarding base for wrapper stores: every method delegates to `inner`, and `init`/`close` are
 * forwarded (a wrapper owns its nested stores). Override what the wrapper changes.
 *
 * @example
 * ```ts ignore
 * class LoggingStore extends WrapperStore {
 *   override readonly kind = "logging";
 *   override read(key: StoreKey, options?: ReadOptions) {
 *     console.log("read", keyToString(key));
 *     return super.read(key, options);
 *   }
 * }
 * ```
 */
export class WrapperStore implements StoreDriver {
  readonly kind: string = "wrapper";
  readonly #inner: StoreDriver | undefined;

  /** `inner` may be left out only by a subclass that overrides the `inner` getter (`ref_store`). */
  constructor(inner?: StoreDriver) {
    this.#inner = inner;
  }

  /** The wrapped store. */
  get inner(): StoreDriver {
    if (!this.#inner) throw new CairnError(Code.Internal, `The ${this.kind} store wraps no store`);
    return this.#inner;
  }

  hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    return this.inner.hasMany(keys);
  }

  read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    return this.inner.read(key, options);
  }

  write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    return this.inner.write(key, data, size, options);
  }

  delete(key: StoreKey): Promise<boolean> {
    return deleteIn(this.inner, key);
  }

  list(): AsyncIterable<StoreKey> {
    return listIn(this.inner);
  }

  async init(stores: StoreLookup): Promise<void> {
    await this.inner.init?.(stores);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

/**
 * `options` for an inner store that receives transformed bytes (compressed, an index…): the caller's
 * `verified` promise was about the original bytes, so it is dropped.
 */
export function transformedWriteOptions(options: WriteOptions | undefined): WriteOptions | undefined {
  if (options?.verified === undefined) return options;
  const { verified: _, ...rest } = options;
  return rest;
}

/**
 * The name of a key inside an external backend (a Redis key, an S3 object key), after the store's
 * `key_prefix`: `hash-size` for a CAS digest (NativeLink's form), `ac/hash-size` for an action-cache key,
 * `str/<text>` for a string key. A digest name has no `/`, so the three kinds never collide.
 */
export function backendKeyName(key: StoreKey): string {
  if (typeof key === "string") return `str/${key}`;
  return "ac" in key ? `ac/${formatDigest(key.ac)}` : formatDigest(key);
}
