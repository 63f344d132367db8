/**
 * `completeness_checking` store: an action cache that only reports an entry when every output it names
 * is still in the CAS. Reading or checking an entry decodes the stored `ActionResult`, gathers the digests
 * of its output files, stdout/stderr, output directory trees and the files inside each tree, and asks
 * `cas_store` for all of them at once; if any is missing (or the entry cannot be decoded) the entry is
 * treated as absent, so a client re-runs the action rather than getting a hit with missing outputs.
 * Only action-cache keys (`{ ac: digest }`) hold ActionResults: CAS digests and string keys (records
 * without a digest, such as the HTTP cache's size records) pass through unchecked. Writes pass through.
 *
 * @example
 * ```ts
 * import { createCompletenessCheckingStore } from "./completeness_checking_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * const acBackend = createMemoryStore();
 * const cas = createMemoryStore();
 * const ac = createCompletenessCheckingStore(acBackend, cas);
 * console.log(ac.kind); // completeness_checking
 * ```
 * @module
 */
import { fromBinary } from "@bufbuild/protobuf";
import { type Digest, EMPTY_SHA256, fromProto } from "../digest/digest.ts";
import {
  ActionResultSchema,
  TreeSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { CairnError, Code } from "../util/error.ts";
import { bytesStream } from "../util/streams.ts";
import { checkMessageSize, MAX_DECODED_MESSAGE_BYTES, TreeBudget } from "../util/limits.ts";
import {
  emptyStream,
  getBytes,
  isAcKey,
  keyToString,
  notFoundError,
  resolveRange,
  tooLargeError,
  WrapperStore,
} from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreLookup } from "./types.ts";

/** Largest action cache entry decoded (larger ones are treated as absent). */
const MAX_ENTRY_SIZE = MAX_DECODED_MESSAGE_BYTES;

/** Entries checked at once by one `hasMany`. */
const ENTRY_CONCURRENCY = 4;

/** Bounds of the entries whose needs are remembered (see `CompletenessCheckingStore.#known`). */
const KNOWN_MAX_ENTRY_BYTES = 64 * 1024;
const KNOWN_MAX_TOTAL_BYTES = 4 * 1024 * 1024;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  const n = a.byteLength;
  if (n !== b.byteLength) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

const isNotFound = (err: unknown) => err instanceof CairnError && err.code === Code.NotFound;

/** What one entry needs from the CAS, or `undefined` when it is absent or undecodable. */
interface Entry {
  readonly bytes: Uint8Array;
  readonly needs: Digest[];
}

/** An action cache wrapper that hides entries whose outputs are gone from the CAS. */
export class CompletenessCheckingStore extends WrapperStore {
  override readonly kind = "completeness_checking";
  readonly cas: StoreDriver;

  constructor(backend: StoreDriver, cas: StoreDriver) {
    super(backend);
    this.cas = cas;
  }

  /**
   * Entries without output directories whose needs were gathered lately, by key (first in, first out): what
   * such an entry needs is a function of its bytes, so bytes equal to a known entry's are not decoded again.
   * Entries with output directories read their trees from the CAS every time.
   */
  readonly #known = new Map<string, Entry>();
  #knownBytes = 0;

  #remember(id: string, entry: Entry): void {
    if (entry.bytes.byteLength > KNOWN_MAX_ENTRY_BYTES) return;
    const old = this.#known.get(id);
    if (old !== undefined) {
      this.#known.delete(id);
      this.#knownBytes -= old.bytes.byteLength;
    }
    this.#known.set(id, entry);
    this.#knownBytes += entry.bytes.byteLength;
    for (const [oldest, e] of this.#known) {
      if (this.#knownBytes <= KNOWN_MAX_TOTAL_BYTES) break;
      this.#known.delete(oldest);
      this.#knownBytes -= e.bytes.byteLength;
    }
  }

  /** Reads an entry and the digests it needs (tree blobs are read and their files added). */
  async #entry(key: StoreKey): Promise<Entry | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await getBytes(this.inner, key, { maxSize: MAX_ENTRY_SIZE });
    } catch (err) {
      if (isNotFound(err) || (err instanceof CairnError && err.code === Code.ResourceExhausted)) {
        return undefined;
      }
      throw err;
    }
    const id = keyToString(key);
    const known = this.#known.get(id);
    if (known !== undefined && sameBytes(known.bytes, bytes)) return { bytes, needs: known.needs };
    try {
      const result = fromBinary(ActionResultSchema, bytes);
      const needs: Digest[] = [];
      for (const f of result.outputFiles) if (f.digest) needs.push(fromProto(f.digest));
      if (result.stdoutDigest) needs.push(fromProto(result.stdoutDigest));
      if (result.stderrDigest) needs.push(fromProto(result.stderrDigest));
      // Each distinct Tree is read once, one at a time, each at most MAX_DECODED_MESSAGE_BYTES and all of
      // them together at most MAX_TREE_WALK_BYTES; both are checked on the digests BEFORE reading (a
      // client-written entry may name any blob as a tree). Too large → RESOURCE_EXHAUSTED naming the digest.
      const trees = new Map<string, Digest>();
      for (const dir of result.outputDirectories) {
        if (dir.treeDigest) {
          const d = fromProto(dir.treeDigest);
          trees.set(keyToString(d), d);
        }
      }
      const budget = new TreeBudget(`Action result ${keyToString(key)}`);
      for (const treeDigest of trees.values()) {
        checkMessageSize("Tree", treeDigest);
        budget.charge(treeDigest.size);
      }
      for (const treeDigest of trees.values()) {
        const tree = fromBinary(
          TreeSchema,
          await getBytes(this.cas, treeDigest, { maxSize: treeDigest.size }),
        );
        needs.push(treeDigest);
        for (const d of [...(tree.root ? [tree.root] : []), ...tree.children]) {
          for (const f of d.files) if (f.digest) needs.push(fromProto(f.digest));
        }
      }
      const entry = { bytes, needs: needs.filter((d) => !(d.size === 0 && d.hash === EMPTY_SHA256)) };
      if (trees.size === 0) this.#remember(id, entry);
      return entry;
    } catch (err) {
      // A missing tree, an undecodable entry or a malformed digest: the entry cannot be served.
      if (err instanceof CairnError && err.code !== Code.NotFound && err.code !== Code.InvalidArgument) {
        throw err;
      }
      return undefined;
    }
  }

  /** The complete entries among `keys` (undefined where absent or incomplete). */
  async #complete(keys: readonly StoreKey[]): Promise<(Entry | undefined)[]> {
    const entries: (Entry | undefined)[] = [];
    for (let i = 0; i < keys.length; i += ENTRY_CONCURRENCY) {
      entries.push(...await Promise.all(keys.slice(i, i + ENTRY_CONCURRENCY).map((k) => this.#entry(k))));
    }
    const unique = new Map<string, Digest>();
    for (const e of entries) for (const d of e?.needs ?? []) unique.set(keyToString(d), d);
    const digests = [...unique.values()];
    const sizes = digests.length ? await this.cas.hasMany(digests) : [];
    const missing = new Set(digests.filter((_, i) => sizes[i] === undefined).map(keyToString));
    return entries.map((e) => (e && !e.needs.some((d) => missing.has(keyToString(d))) ? e : undefined));
  }

  override async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const acIdx: number[] = [];
    const otherIdx: number[] = [];
    keys.forEach((k, i) => (isAcKey(k) ? acIdx : otherIdx).push(i));
    const [entries, others] = await Promise.all([
      acIdx.length ? this.#complete(acIdx.map((i) => keys[i]!)) : [],
      otherIdx.length ? this.inner.hasMany(otherIdx.map((i) => keys[i]!)) : [],
    ]);
    const out = new Array<number | undefined>(keys.length);
    acIdx.forEach((i, j) => (out[i] = entries[j]?.bytes.byteLength));
    otherIdx.forEach((i, j) => (out[i] = others[j]));
    return out;
  }

  override async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    if (!isAcKey(key)) return await this.inner.read(key, options);
    const [entry] = await this.#complete([key]);
    if (!entry) throw notFoundError(this.kind, key);
    options?.signal?.throwIfAborted();
    const { start, end } = resolveRange(key, entry.bytes.byteLength, options);
    return start === end ? emptyStream() : bytesStream(entry.bytes.subarray(start, end));
  }

  /** As {@linkcode read}, without a stream: the checked entry's bytes (or a range of them). */
  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    if (!isAcKey(key)) return await getBytes(this.inner, key, options);
    const [entry] = await this.#complete([key]);
    if (!entry) throw notFoundError(this.kind, key);
    options.signal?.throwIfAborted();
    const { start, end } = resolveRange(key, entry.bytes.byteLength, options);
    if (end - start > options.maxSize) throw tooLargeError(key, end - start, options.maxSize);
    return entry.bytes.subarray(start, end);
  }

  override async init(stores: StoreLookup): Promise<void> {
    await super.init(stores);
    await this.cas.init?.(stores);
  }

  override async close(): Promise<void> {
    await Promise.all([super.close(), this.cas.close?.()]);
  }
}

/** Creates a {@linkcode CompletenessCheckingStore}. */
export function createCompletenessCheckingStore(
  backend: StoreDriver,
  cas: StoreDriver,
): CompletenessCheckingStore {
  return new CompletenessCheckingStore(backend, cas);
}

/** Registry factory for `{ completeness_checking: { backend, cas_store } }`. */
export const completenessCheckingStoreFactory: StoreFactory<"completeness_checking"> = (fields, ctx) => {
  if (fields.backend === undefined) throw ctx.error("backend is missing");
  if (fields.cas_store === undefined) throw ctx.error("cas_store is missing");
  return new CompletenessCheckingStore(
    ctx.build(fields.backend, "backend"),
    ctx.build(fields.cas_store, "cas_store"),
  );
};
