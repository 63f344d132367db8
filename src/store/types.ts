/**
 * The store driver: the small core every store kind implements.
 *
 * Keys are typed: a digest `{hash, size}` names a CAS blob of exactly that size; an {@linkcode AcKey}
 * `{ ac: digest }` names the action-cache entry (an encoded ActionResult of any length) of the action with
 * that digest, as in NativeLink, so routing stores (`size_partitioning`, `shard`) partition it on the
 * action's digest while no store checks the stored value against the action's size; a plain string names
 * a record that has no digest. Data moves as Web Streams; whole-blob conveniences are derived once in
 * `helpers.ts`, never written per store.
 *
 * @example
 * ```ts
 * import type { StoreDriver } from "./types.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { acKey, putBytes } from "./helpers.ts";
 * const store: StoreDriver = createMemoryStore();
 * const hash = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"; // sha256("hello\n")
 * await putBytes(store, { hash, size: 6 }, new TextEncoder().encode("hello\n"));
 * const [size] = await store.hasMany([{ hash, size: 6 }]); // 6 (undefined when absent)
 * const stream = await store.read({ hash, size: 6 }, { offset: 1, length: 3 }); // "ell"
 * console.log(size, await new Response(stream).text());
 * const [resultSize] = await store.hasMany([acKey({ hash, size: 42 })]); // an ActionResult's length, if any
 * ```
 * @module
 */
import type { Digest } from "../digest/digest.ts";

/**
 * The action-cache key of an action: its digest, marked so that the stored value (an encoded ActionResult)
 * is not taken for the blob the digest names. Build one with `acKey(digest)` (helpers.ts).
 */
export interface AcKey {
  readonly ac: Digest;
}

/** A store key: a CAS digest, an action-cache key, or a string naming a record without a digest. */
export type StoreKey = Digest | AcKey | string;

/** How big an upload is: known exactly (a digest) or bounded. */
export type UploadSize = { readonly exact: number } | { readonly max: number };

/** Options of {@linkcode StoreDriver.read}. */
export interface ReadOptions {
  /** First byte to read (default 0). Past the end is OUT_OF_RANGE; equal to the size yields an empty stream. */
  readonly offset?: number;
  /** At most this many bytes (default: to the end). */
  readonly length?: number;
  /** Aborts the read and releases its resources. */
  readonly signal?: AbortSignal;
}

/** Options of {@linkcode StoreDriver.write}. */
export interface WriteOptions {
  /** Aborts the write; nothing is stored. */
  readonly signal?: AbortSignal;
  /**
   * The caller checks the stream against the key's digest (size and SHA-256) and errors it at its end on a
   * mismatch, so nothing wrong is committed; a `verify` wrapper then need not hash the bytes again.
   */
  readonly verified?: boolean;
  /**
   * The caller's thread is busy receiving the bytes (a network upload): a store may move its CPU-heavy write
   * work (filling the page cache) to another thread. Stores fed from memory do better inline.
   */
  readonly offload?: boolean;
}

/** Resolves store names to built stores (for `ref_store` and wrappers that name other stores). */
export interface StoreLookup {
  /** The store of that name; throws when there is none. */
  get(name: string): StoreDriver;
}

/** The required core of every store kind. */
export interface StoreDriver {
  /** The config kind (`memory`, `filesystem`, …), for messages and metrics. */
  readonly kind: string;

  /**
   * Sizes of many keys at once, in order: the stored size, or `undefined` when absent. A store that evicts
   * counts a key found as used (REAPI: FindMissingBlobs and GetActionResult SHOULD extend the lifetimes of the
   * blobs they reference), so an action result whose outputs are checked often stays complete.
   */
  hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]>;

  /**
   * Opens a byte range of a stored value. Throws NOT_FOUND (a `CairnError`) when the key is absent,
   * OUT_OF_RANGE when `offset` is past the end. Cancelling the stream releases every resource.
   */
  read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>>;

  /**
   * Stores a value from a stream. The value becomes visible only once the whole stream has been consumed
   * and checked against `size` (and by wrappers, its hash); on any error nothing is stored.
   * Wrong size → INVALID_ARGUMENT naming expected and actual.
   */
  write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void>;

  /**
   * Optional shortcut for small values: bytes `[offset, offset + length)` of a stored value at once, without
   * a stream; RESOURCE_EXHAUSTED when they are more than `maxSize`. `getBytes` uses it when present.
   */
  readBytes?(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array>;

  /** Removes a key; true when it existed. Optional. */
  delete?(key: StoreKey): Promise<boolean>;

  /** Lists keys (digests for CAS-like stores). Optional. */
  list?(): AsyncIterable<StoreKey>;

  /** Called once after every store of the config is built (resolve `ref_store` names, start timers…). */
  init?(stores: StoreLookup): Promise<void>;

  /** Flushes and releases resources at shutdown. */
  close?(): Promise<void>;

  /** What a store holding its own data uses against its eviction limit (for metrics and the status page). */
  usage?(): StoreUsage;

  /**
   * The store this one forwards every value to byte for byte (reads unchanged), so a caller needing a
   * capability of the store behind it (a worker hard-linking a `filesystem` store's files) may reach it.
   * Implemented only by pass-through kinds (`ref_store`, `verify`); a store that changes
   * bytes (`compression`, `dedup`) or routes them (`fast_slow`, `shard`) has none, so callers keep going
   * through it. Optional.
   */
  innerStore?(): StoreDriver;
}

/** Bytes and entries a store holds, and its `eviction_policy.max_bytes` (0: no limit). */
export interface StoreUsage {
  readonly bytes: number;
  readonly count: number;
  readonly maxBytes: number;
}
