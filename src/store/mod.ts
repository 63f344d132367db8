/**
 * Stores: where Cairn keeps blobs (CAS), action results (AC) and named records.
 *
 * ## API summary (stable; other store kinds build on it)
 *
 * **Core contract** — `types.ts`: {@linkcode StoreDriver} (`kind`, `hasMany`, `read`, `write`, optional
 * `delete`, `list`, `init(lookup)`, `close`), `StoreKey = Digest | AcKey | string` (a CAS blob, an action-cache
 * entry `{ ac: actionDigest }`, a record without a digest), `UploadSize = {exact} | {max}`.
 *
 * **Helpers** — `helpers.ts`, derived once for any store:
 * - `has(store, key)` → size | undefined; `getBytes(store, key, {maxSize, offset?, length?})` (small values,
 *   RESOURCE_EXHAUSTED above maxSize); `putBytes(store, key, bytes)`.
 * - `acKey(actionDigest)`; `keyToString(key)` (`hash-size` | `ac:hash-size` | the string), `keyId(key)` (unique
 *   across kinds), `isDigestKey` (CAS digests only), `isAcKey`, `routingDigest` (what routing stores partition
 *   on), `sizeOfKey` (a CAS digest's size).
 * - For implementers: `expectedUploadSize(key, size)` (checks `{exact}` vs the digest up front),
 *   `uploadLimit(size)`, `resolveRange(key, size, options)` (OUT_OF_RANGE past the end, clips length),
 *   `notFoundError(kind, key)`, `emptyStream()`, `evictionPolicyFrom(fields, ctx)`.
 * - `WrapperStore`: forwarding base class (`this.inner`); forwards `init`/`close` to the wrapped store —
 *   a wrapper OWNS its nested stores and must forward `init` and `close` to each of them.
 * - Stream helpers in `../util/streams.ts`: `bytesStream`, `collectBytes`, `forEachChunk(stream, fn, signal)`,
 *   `sizeCheckStream`, `sliceStream`, `countingStream`, `hashingStream`, `patternStream` (test data).
 *   LRU with byte budget + NativeLink eviction policy: `../util/lru.ts` `LruIndex`.
 *
 * **Registry** — `registry.ts`: `createStoreRegistry()` → `{register(kind, factory), kinds(), build(name, spec)}`;
 * `registerStoreKind(kind, factory)` adds to the default table. A factory is
 * `StoreFactory = (fields, ctx) => StoreDriver` where `fields` is `spec[kind]` (snake_case, sizes in bytes,
 * durations in seconds) and `ctx` offers `ctx.build(nestedSpec, "backend")` for nested stores,
 * `ctx.error(msg)` (→ `Cannot open store "NAME": <path>: msg`), field readers `ctx.string/number/boolean/object`
 * and `ctx.options.now` (test clock). Unknown kinds list the valid ones; known-but-absent kinds say
 * `… is not yet supported`.
 *
 * **Adding a kind**: write `<kind>_store.ts` exporting the class, a `create<Kind>Store(...)` factory and a
 * `<kind>StoreFactory: StoreFactory`; add one line to the table in `registry.ts`.
 *
 * **Manager** — `store_manager.ts`: `createStoreManager(config, {registry?, options?})` builds every named
 * store (`Record<name, spec>` or `[{name, spec}]` / NativeLink's `[{name, <kind>: {...}}]`), calls `init` once
 * on each top-level store, implements `StoreLookup.get(name)`, `check()` health, `close()`.
 *
 * **Tests** — `conformance_suite.ts`: `runStoreConformance(name, makeStore, options)` registers the shared
 * behaviour tests; `assertRejectsWithCode(promise, code)`.
 *
 * @example
 * ```ts
 * import { createStoreManager, getBytes, putBytes } from "./mod.ts";
 * const stores = await createStoreManager({ cas: { memory: { eviction_policy: { max_bytes: 1e9 } } } });
 * const cas = stores.get("cas");
 * await putBytes(cas, "greeting", new TextEncoder().encode("hi"));
 * await stores.close();
 * ```
 * @module
 */
export type {
  AcKey,
  ReadOptions,
  StoreDriver,
  StoreKey,
  StoreLookup,
  UploadSize,
  WriteOptions,
} from "./types.ts";
export {
  acKey,
  emptyStream,
  evictionPolicyFrom,
  expectedUploadSize,
  getBytes,
  type GetBytesOptions,
  has,
  isAcKey,
  isDigestKey,
  keyId,
  keyToString,
  notFoundError,
  putBytes,
  resolveRange,
  routingDigest,
  sizeOfKey,
  uploadLimit,
  WrapperStore,
} from "./helpers.ts";
export {
  createStoreRegistry,
  registerStoreKind,
  type SpecFields,
  STORE_KINDS,
  type StoreBuildContext,
  type StoreBuildOptions,
  type StoreFactory,
  type StoreRegistry,
  type StoreSpec,
} from "./registry.ts";
export { createStoreManager, type StoreHealth, StoreManager, type StoresConfig } from "./store_manager.ts";
export { createMemoryStore, MemoryStore } from "./memory_store.ts";
export { createFilesystemStore, FilesystemStore } from "./filesystem_store.ts";
export { createNoopStore, NoopStore } from "./noop_store.ts";
export { createRefStore, RefStore } from "./ref_store.ts";
export { createVerifyStore, VerifyStore } from "./verify_store.ts";
