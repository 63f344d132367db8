/**
 * The REAPI ActionCache service: `GetActionResult` and `UpdateActionResult` per instance name.
 *
 * Entries are the encoded `ActionResult` stored in the instance's AC store under the action-cache key
 * `acKey(actionDigest)` (`{ ac: digest }`): routing stores partition it on the action digest, no store checks
 * the value's length against the action's size, and a `grpc` AC store sends it upstream as the action digest.
 * Everyone reading or writing the AC (workers, the scheduler's cache lookup) uses this key. A miss is
 * NOT_FOUND; a `completeness_checking` AC store turns results whose blobs are gone into misses by itself.
 * `inline_stdout`, `inline_stderr` and `inline_output_files` are filled from the instance's CAS store within
 * the inline budget (the batch limit); blobs that do not fit or are gone are left to the client to fetch.
 *
 * @example
 * ```ts
 * import { createActionCacheService } from "./action_cache_service.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const acStore = createMemoryStore();
 * const casStore = createMemoryStore();
 * const impl = createActionCacheService({ instances: new Map([["main", { acStore, casStore }]]) });
 * ```
 * @module
 */
import { recordAcLookup } from "./cache_metrics.ts";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type ActionCache,
  type ActionResult,
  ActionResultSchema,
  type Digest as DigestProto,
  GetActionResultRequestSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { decodeRequest } from "../util/proto_wire.ts";
import type { EncodedUnary } from "../transport/types.ts";
import { type Digest, EMPTY_SHA256, formatDigest, fromProto } from "../digest/digest.ts";
import { acKey, getBytes, putBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES } from "./cas_service.ts";
import { checkDigestFunction } from "./digest_function.ts";
import { createInstances } from "./instances.ts";

/** Largest stored ActionResult accepted (reads and writes). */
export const MAX_ACTION_RESULT_BYTES = 16 * 1024 * 1024;

/** One instance of the ActionCache service. */
export interface AcInstance {
  readonly acStore: StoreDriver;
  /** The instance's CAS store, for inlining outputs (no inlining without one). */
  readonly casStore?: StoreDriver;
  /** Config `read_only`: UpdateActionResult is refused. */
  readonly readOnly?: boolean;
}

/** The ActionCache implementation plus encoded-bytes methods for the gRPC fast path. */
export type ActionCacheServiceImpl = Partial<ServiceImpl<typeof ActionCache>> & {
  /** `getActionResult` on encoded messages: a stored result goes out as stored when nothing is inlined. */
  readonly encoded: { readonly getActionResult: EncodedUnary };
};

/** Options of {@linkcode createActionCacheService}. */
export interface ActionCacheServiceOptions {
  readonly instances: ReadonlyMap<string, AcInstance>;
  /** Total bytes inlined into one response (default: the 4 MiB batch limit). */
  readonly maxInlineBytes?: number;
}

/** Reads an ActionResult stored for `digest`; NOT_FOUND when absent or unreadable. */
export async function readActionResult(acStore: StoreDriver, digest: Digest): Promise<ActionResult> {
  const bytes = await getBytes(acStore, acKey(digest), { maxSize: MAX_ACTION_RESULT_BYTES });
  return decodeActionResult(bytes, digest);
}

/**
 * The stored bytes of an ActionResult, to serve as stored; NOT_FOUND when absent or not a valid ActionResult.
 * The bytes are decoded in full to check them, so this path refuses exactly what {@linkcode readActionResult}
 * refuses, damage in a nested field included; it still saves the re-encoding (decoding alone measured at
 * 40–80% of decoding and encoding again, for results of 1 KB to 2.4 MB; a top-level-only wire check was 4 to
 * 24 times cheaper than decoding but let nested damage through). Bytes equal to the ones that last decoded
 * for the same action are not decoded again (decoding is a function of the bytes: the outcome is the same).
 */
export async function readEncodedActionResult(acStore: StoreDriver, digest: Digest): Promise<Uint8Array> {
  const bytes = await getBytes(acStore, acKey(digest), { maxSize: MAX_ACTION_RESULT_BYTES });
  checkEncodedActionResult(bytes, digest); // throws NOT_FOUND with the reason
  return bytes;
}

/** Recently checked results that decoded, by action digest (first in, first out). */
const decoded = new Map<string, Uint8Array>();
let decodedBytes = 0;
/** Bounds of {@linkcode decoded}: results larger than this are decoded on every read. */
const DECODED_MAX_RESULT_BYTES = 64 * 1024;
const DECODED_MAX_TOTAL_BYTES = 4 * 1024 * 1024;

/** Checks that `bytes` decode as an ActionResult (NOT_FOUND otherwise), skipping bytes seen decoding before. */
function checkEncodedActionResult(bytes: Uint8Array, digest: Digest): void {
  if (bytes.byteLength > DECODED_MAX_RESULT_BYTES) {
    decodeActionResult(bytes, digest);
    return;
  }
  const id = `${digest.hash}/${digest.size}`;
  const known = decoded.get(id);
  if (known !== undefined && sameBytes(known, bytes)) return;
  decodeActionResult(bytes, digest);
  if (known !== undefined) {
    decoded.delete(id);
    decodedBytes -= known.byteLength;
  }
  decoded.set(id, bytes);
  decodedBytes += bytes.byteLength;
  for (const [oldest, b] of decoded) {
    if (decodedBytes <= DECODED_MAX_TOTAL_BYTES) break;
    decoded.delete(oldest);
    decodedBytes -= b.byteLength;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  const n = a.byteLength;
  if (n !== b.byteLength) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function decodeActionResult(bytes: Uint8Array, digest: Digest): ActionResult {
  try {
    return fromBinary(ActionResultSchema, bytes);
  } catch (err) {
    throw new CairnError(Code.NotFound, `Action result ${formatDigest(digest)} is not a valid ActionResult`, {
      cause: err,
    });
  }
}

/** Checks every digest inside an ActionResult; INVALID_ARGUMENT naming the bad one. */
export function validateActionResult(result: ActionResult): void {
  const check = (d: DigestProto | undefined, what: string, required: boolean) => {
    if (d === undefined) {
      if (required) throw new CairnError(Code.InvalidArgument, `Invalid ActionResult: ${what} has no digest`);
      return;
    }
    try {
      fromProto(d);
    } catch (err) {
      throw new CairnError(Code.InvalidArgument, `Invalid ActionResult: ${what}: ${(err as Error).message}`);
    }
  };
  for (const f of result.outputFiles) check(f.digest, `output file "${f.path}"`, true);
  for (const d of result.outputDirectories) check(d.treeDigest, `output directory "${d.path}"`, true);
  check(result.stdoutDigest, "stdout", false);
  check(result.stderrDigest, "stderr", false);
}

/** Counts a lookup as an action-cache hit or miss (`nativelink_ac_hits` / `nativelink_ac_requests`). */
async function counted<T>(instance: string, lookup: Promise<T>): Promise<T> {
  try {
    const found = await lookup;
    recordAcLookup(instance, true);
    return found;
  } catch (err) {
    if (err instanceof CairnError && err.code === Code.NotFound) recordAcLookup(instance, false);
    throw err;
  }
}

/**
 * Builds the ActionCache implementation.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const acStore = createMemoryStore();
 * const casStore = createMemoryStore();
 * const impl = createActionCacheService({
 *   instances: new Map([["", { acStore, casStore, readOnly: false }]]),
 * });
 * ```
 */
export function createActionCacheService(options: ActionCacheServiceOptions): ActionCacheServiceImpl {
  const instances = createInstances("ActionCache", options.instances);
  const maxInline = options.maxInlineBytes ?? DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;

  const impl: ActionCacheServiceImpl = {
    encoded: {
      async getActionResult(bytes, context) {
        const req = decodeRequest(GetActionResultRequestSchema, bytes);
        const inst = instances.get(req.instanceName);
        const inlining = req.inlineStdout || req.inlineStderr || req.inlineOutputFiles.length > 0;
        if (inlining && inst.casStore !== undefined) {
          const result = await impl.getActionResult!(req, context);
          return toBinary(ActionResultSchema, create(ActionResultSchema, result));
        }
        const digest = fromProto(req.actionDigest, checkDigestFunction(req.digestFunction));
        return await counted(req.instanceName, readEncodedActionResult(inst.acStore, digest));
      },
    },

    async getActionResult(req) {
      const fn = checkDigestFunction(req.digestFunction);
      const inst = instances.get(req.instanceName);
      const digest = fromProto(req.actionDigest, fn);
      const result = await counted(req.instanceName, readActionResult(inst.acStore, digest));
      const cas = inst.casStore;
      if (cas === undefined) return result;
      let budget = maxInline;
      const inline = async (
        d: DigestProto | undefined,
        current: Uint8Array,
      ): Promise<Uint8Array | undefined> => {
        if (d === undefined || current.byteLength > 0) return undefined;
        const blob = fromProto(d, fn);
        if (blob.size > budget) return undefined;
        if (blob.size === 0 && blob.hash === EMPTY_SHA256) return new Uint8Array(0);
        try {
          const bytes = await getBytes(cas, blob, { maxSize: blob.size });
          budget -= bytes.byteLength;
          return bytes;
        } catch (err) {
          if (CairnError.from(err).code === Code.NotFound) return undefined;
          throw err;
        }
      };
      if (req.inlineStdout) {
        result.stdoutRaw = (await inline(result.stdoutDigest, result.stdoutRaw)) ?? result.stdoutRaw;
      }
      if (req.inlineStderr) {
        result.stderrRaw = (await inline(result.stderrDigest, result.stderrRaw)) ?? result.stderrRaw;
      }
      if (req.inlineOutputFiles.length > 0) {
        const wanted = new Set(req.inlineOutputFiles);
        for (const file of result.outputFiles) {
          if (!wanted.has(file.path)) continue;
          file.contents = (await inline(file.digest, file.contents)) ?? file.contents;
        }
      }
      return result;
    },

    async updateActionResult(req) {
      const fn = checkDigestFunction(req.digestFunction);
      const inst = instances.get(req.instanceName);
      if (inst.readOnly) {
        throw new CairnError(
          Code.PermissionDenied,
          `The action cache of instance ${quoteClient(req.instanceName)} is read-only`,
        );
      }
      const digest = fromProto(req.actionDigest, fn);
      const result = req.actionResult;
      if (result === undefined) {
        throw new CairnError(Code.InvalidArgument, "UpdateActionResult has no action_result");
      }
      validateActionResult(result);
      const bytes = toBinary(ActionResultSchema, result);
      if (bytes.byteLength > MAX_ACTION_RESULT_BYTES) {
        throw new CairnError(
          Code.InvalidArgument,
          `ActionResult for ${
            formatDigest(digest)
          } is ${bytes.byteLength} bytes, more than ${MAX_ACTION_RESULT_BYTES}`,
        );
      }
      await putBytes(inst.acStore, acKey(digest), bytes);
      return result;
    },
  };
  return impl;
}
