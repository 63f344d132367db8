/**
 * The REAPI ContentAddressableStorage service: `FindMissingBlobs`, `BatchUpdateBlobs`, `BatchReadBlobs`
 * and `GetTree`, per instance name, over each instance's CAS store.
 *
 * Batches are bounded by `maxBatchTotalSizeBytes` (advertised in capabilities; INVALID_ARGUMENT beyond it)
 * and report a status per blob. zstd is honoured per blob (`compressor` on update, `acceptable_compressors`
 * on read). The empty blob is always present. `GetTree` walks the tree breadth first, deduplicating
 * directories; its page token is the number of directories already returned.
 *
 * @example
 * ```ts
 * import { createCasService } from "./cas_service.ts";
 * import { ContentAddressableStorage } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const casStore = createMemoryStore();
 * const impl = createCasService({ instances: new Map([["main", { casStore }]]) });
 * const binding = { service: ContentAddressableStorage, impl };
 * ```
 * @module
 */
import { recordCasLookups } from "./cache_metrics.ts";
import { fromBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type BatchReadBlobsResponse_ResponseSchema,
  type BatchUpdateBlobsResponse_ResponseSchema,
  Compressor_Value,
  type ContentAddressableStorage,
  type DigestSchema,
  type Directory,
  DirectorySchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  type Digest,
  type DigestFunctionName,
  digestOf,
  EMPTY_SHA256,
  formatDigest,
  fromProto,
} from "../digest/digest.ts";
import { getBytes, putBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { checkDigestFunction } from "./digest_function.ts";
import { createInstances, type Instances } from "./instances.ts";
import { okStatus, statusFromError } from "./rpc_status.ts";
import { zstdCompress, zstdDecompress } from "./zstd_stream.ts";
import { checkMessageSize, sliceByBytes, TreeBudget } from "../util/limits.ts";
import { mapLimit } from "../util/async.ts";

/** Default advertised `max_batch_total_size_bytes`: 4 MiB. */
export const DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES = 4 * 1024 * 1024;

/** Default number of directories per `GetTree` page when the client sets none. */
export const DEFAULT_GET_TREE_PAGE_SIZE = 1000;

/** Largest `page_size` honoured (a larger one is lowered to it; pages are also bounded in bytes). */
export const MAX_GET_TREE_PAGE_SIZE = 10_000;

/** Upper bound of the encoded directories in one `GetTree` response message. */
const GET_TREE_MAX_PAGE_BYTES = 2 * 1024 * 1024;

/** Directories read concurrently while walking a tree. */
const GET_TREE_READ_CONCURRENCY = 32;

/** Blobs written or read concurrently in a batch. */
const BATCH_CONCURRENCY = 16;

/** One instance of the CAS service. */
export interface CasInstance {
  readonly casStore: StoreDriver;
  /** zstd accepted in BatchUpdateBlobs and sent by BatchReadBlobs (default true; what Capabilities advertises). */
  readonly zstd?: boolean;
}

/** Options of {@linkcode createCasService}. */
export interface CasServiceOptions {
  /** Instance name → its CAS store. */
  readonly instances: ReadonlyMap<string, CasInstance>;
  /** The batch limit (default {@linkcode DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES}). */
  readonly maxBatchTotalSizeBytes?: number;
}

/** The proto form of a digest. */
export function toProto(d: Digest): DigestInit {
  return { hash: d.hash, sizeBytes: BigInt(d.size) };
}

/** A digest message as handlers return it. */
export type DigestInit = MessageInitShape<typeof DigestSchema>;

function isEmpty(d: Digest): boolean {
  return d.size === 0 && d.hash === EMPTY_SHA256;
}

/** Verifies that bytes match a digest; throws INVALID_ARGUMENT naming both. */
export function verifyBytes(d: Digest, bytes: Uint8Array): void {
  if (bytes.byteLength !== d.size) {
    throw new CairnError(
      Code.InvalidArgument,
      `Size mismatch for ${formatDigest(d)}: digest says ${d.size} bytes, data has ${bytes.byteLength}`,
    );
  }
  const actual = digestOf(bytes);
  if (actual.hash !== d.hash) {
    throw new CairnError(
      Code.InvalidArgument,
      `Hash mismatch for ${formatDigest(d)}: data hashes to ${actual.hash}`,
    );
  }
}

/**
 * Walks a directory tree breadth first from `root`, yielding each distinct directory once, in a stable
 * order. The root missing → NOT_FOUND; missing descendants are omitted (REAPI).
 */
export async function* walkTree(
  store: StoreDriver,
  root: Digest,
): AsyncGenerator<{ dir: Directory; size: number }> {
  const seen = new Set<string>([formatDigest(root)]);
  const budget = new TreeBudget(`Cannot get tree ${formatDigest(root)}`);
  let level: Digest[] = [root];
  let first = true;
  while (level.length > 0) {
    const next: Digest[] = [];
    // Each slice's reads are bounded in count and bytes; each Directory is size-checked before it is read.
    for (const slice of sliceByBytes(level, GET_TREE_READ_CONCURRENCY)) {
      for (const d of slice) {
        checkMessageSize("Directory", d);
        budget.charge(d.size);
      }
      const dirs = await mapLimit(slice, GET_TREE_READ_CONCURRENCY, async (d) => {
        try {
          const bytes = isEmpty(d) ? new Uint8Array(0) : await getBytes(store, d, { maxSize: d.size });
          return { dir: fromBinary(DirectorySchema, bytes), size: bytes.byteLength };
        } catch (err) {
          const e = CairnError.from(err);
          if (e.code === Code.NotFound && !first) return undefined;
          if (e.code === Code.NotFound) {
            throw new CairnError(
              Code.NotFound,
              `Cannot get tree: root directory ${formatDigest(d)} is not in the CAS`,
            );
          }
          throw e;
        }
      });
      first = false;
      for (const entry of dirs) {
        if (entry === undefined) continue;
        for (const child of entry.dir.directories) {
          const cd = fromProto(child.digest);
          const key = formatDigest(cd);
          if (!seen.has(key)) {
            seen.add(key);
            next.push(cd);
          }
        }
        yield entry;
      }
    }
    level = next;
  }
}

/** A request's digest, or the INVALID_ARGUMENT error it deserves (for per-blob statuses). */
function parseDigest(
  d: { hash: string; sizeBytes: bigint } | undefined,
  fn: DigestFunctionName,
): Digest | CairnError {
  try {
    return fromProto(d, fn);
  } catch (err) {
    return CairnError.from(err);
  }
}

function encodePageToken(offset: number): string {
  return btoa(`gettree:${offset}`);
}

function decodePageToken(token: string): number {
  if (token === "") return 0;
  let text: string;
  try {
    text = atob(token);
  } catch {
    text = "";
  }
  const m = /^gettree:(\d+)$/.exec(text);
  if (!m) throw new CairnError(Code.InvalidArgument, `Invalid GetTree page_token ${quoteClient(token)}`);
  return Number(m[1]);
}

/**
 * Builds the ContentAddressableStorage implementation.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const casStore = createMemoryStore();
 * const impl = createCasService({ instances: new Map([["", { casStore }]]), maxBatchTotalSizeBytes: 4 << 20 });
 * ```
 */
export function createCasService(
  options: CasServiceOptions,
): Partial<ServiceImpl<typeof ContentAddressableStorage>> {
  const instances: Instances<CasInstance> = createInstances("ContentAddressableStorage", options.instances);
  const maxBatch = options.maxBatchTotalSizeBytes ?? DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;

  return {
    async findMissingBlobs(req) {
      const fn = checkDigestFunction(req.digestFunction);
      const { casStore } = instances.get(req.instanceName);
      const digests = req.blobDigests.map((d) => fromProto(d, fn));
      const candidates = digests.filter((d) => !isEmpty(d));
      const sizes = candidates.length === 0 ? [] : await casStore.hasMany(candidates);
      const missing: DigestInit[] = [];
      const reported = new Set<string>();
      candidates.forEach((d, i) => {
        const key = formatDigest(d);
        if (sizes[i] === undefined && !reported.has(key)) {
          reported.add(key);
          missing.push(toProto(d));
        }
      });
      recordCasLookups(
        req.instanceName,
        "FindMissingBlobs",
        candidates.length,
        candidates.length - missing.length,
      );
      return { missingBlobDigests: missing };
    },

    async batchUpdateBlobs(req) {
      const fn = checkDigestFunction(req.digestFunction);
      const { casStore, zstd } = instances.get(req.instanceName);
      // Every digest is checked first (an invalid one gets its own status and counts 0: a negative size
      // must not lower the sums), then the batch limit counts both the bytes sent and the bytes they
      // decompress to (declared sizes), before anything is inflated.
      const digests = req.requests.map((r) => parseDigest(r.digest, fn));
      const sent = req.requests.reduce((n, r) => n + r.data.byteLength, 0);
      const declared = digests.reduce((n, d) => n + (d instanceof CairnError ? 0 : d.size), 0);
      if (sent > maxBatch || declared > maxBatch) {
        throw new CairnError(
          Code.InvalidArgument,
          `BatchUpdateBlobs carries ${sent} bytes declaring ${declared} bytes of blobs, more than ` +
            `max_batch_total_size_bytes ${maxBatch}: use ByteStream`,
        );
      }
      const responses = await mapLimit(
        req.requests,
        BATCH_CONCURRENCY,
        async (r, i): Promise<MessageInitShape<typeof BatchUpdateBlobsResponse_ResponseSchema>> => {
          const d = digests[i]!;
          const digestInit = r.digest ? { hash: r.digest.hash, sizeBytes: r.digest.sizeBytes } : undefined;
          if (d instanceof CairnError) return { digest: digestInit, status: statusFromError(d) };
          try {
            let data = r.data;
            // Inflating stops at the declared size: a bomb costs at most its (batch-bounded) digest size.
            if (r.compressor === Compressor_Value.ZSTD && zstd === false) {
              throw new CairnError(
                Code.InvalidArgument,
                `zstd is off for instance "${
                  quoteClient(req.instanceName)
                }" (remote_cache_compression: false): send ${formatDigest(d)} uncompressed`,
              );
            }
            if (r.compressor === Compressor_Value.ZSTD) data = zstdDecompress(data, d.size);
            else if (r.compressor !== Compressor_Value.IDENTITY) {
              throw new CairnError(
                Code.InvalidArgument,
                `Unsupported compressor ${Compressor_Value[r.compressor] ?? r.compressor} for ${
                  formatDigest(d)
                }`,
              );
            }
            verifyBytes(d, data);
            if (!isEmpty(d)) await putBytes(casStore, d, data);
            return { digest: digestInit, status: okStatus() };
          } catch (err) {
            return { digest: digestInit, status: statusFromError(err) };
          }
        },
      );
      return { responses };
    },

    async batchReadBlobs(req) {
      const fn = checkDigestFunction(req.digestFunction);
      const { casStore, zstd } = instances.get(req.instanceName);
      // Every digest is checked first: an invalid one (e.g. a negative size) gets its own status and counts 0,
      // so it cannot lower the total below the limit.
      const digests = req.digests.map((d) => parseDigest(d, fn));
      const total = digests.reduce((n, d) => n + (d instanceof CairnError ? 0 : d.size), 0);
      if (total > maxBatch) {
        throw new CairnError(
          Code.InvalidArgument,
          `BatchReadBlobs asks for ${total} bytes, more than max_batch_total_size_bytes ${maxBatch}: use ByteStream`,
        );
      }
      const zstdOk = zstd !== false && req.acceptableCompressors.includes(Compressor_Value.ZSTD);
      const responses = await mapLimit(
        digests,
        BATCH_CONCURRENCY,
        async (d, i): Promise<MessageInitShape<typeof BatchReadBlobsResponse_ResponseSchema>> => {
          const dp = req.digests[i]!;
          const digestInit = { hash: dp.hash, sizeBytes: dp.sizeBytes };
          if (d instanceof CairnError) return { digest: digestInit, status: statusFromError(d) };
          try {
            const data = isEmpty(d) ? new Uint8Array(0) : await getBytes(casStore, d, { maxSize: d.size });
            if (zstdOk && data.byteLength > 0) {
              const packed = zstdCompress(data);
              if (packed.byteLength < data.byteLength) {
                return {
                  digest: digestInit,
                  data: packed,
                  compressor: Compressor_Value.ZSTD,
                  status: okStatus(),
                };
              }
            }
            return { digest: digestInit, data, compressor: Compressor_Value.IDENTITY, status: okStatus() };
          } catch (err) {
            return { digest: digestInit, status: statusFromError(err) };
          }
        },
      );
      const found = responses.filter((r) => r.status?.code === 0).length;
      recordCasLookups(req.instanceName, "BatchReadBlobs", responses.length, found);
      return { responses };
    },

    async *getTree(req, ctx) {
      const fn = checkDigestFunction(req.digestFunction);
      const { casStore } = instances.get(req.instanceName);
      const root = fromProto(req.rootDigest, fn);
      if (req.pageSize < 0) {
        throw new CairnError(Code.InvalidArgument, `Invalid GetTree page_size ${req.pageSize}`);
      }
      const pageSize = req.pageSize === 0
        ? DEFAULT_GET_TREE_PAGE_SIZE
        : Math.min(req.pageSize, MAX_GET_TREE_PAGE_SIZE);
      const skip = decodePageToken(req.pageToken);
      let index = 0;
      let page: Directory[] = [];
      let pageBytes = 0;
      for await (const { dir, size } of walkTree(casStore, root)) {
        if (ctx.signal.aborted) return;
        index++;
        if (index <= skip) continue;
        if (page.length >= pageSize || (page.length > 0 && pageBytes + size > GET_TREE_MAX_PAGE_BYTES)) {
          yield { directories: page, nextPageToken: encodePageToken(index - 1) };
          page = [];
          pageBytes = 0;
        }
        page.push(dir);
        pageBytes += size;
      }
      if (index < skip) {
        throw new CairnError(
          Code.InvalidArgument,
          `GetTree page_token points past the end of the tree (${index} directories)`,
        );
      }
      yield { directories: page, nextPageToken: "" };
    },
  };
}
