/**
 * The REAPI Capabilities service: `GetCapabilities` per instance name, truthful to the config.
 *
 * Cache capabilities: SHA256, zstd where the instance accepts it (`supported_compressors` when ByteStream
 * serves the instance, `supported_batch_update_compressors` when the CAS does, neither with
 * `remote_cache_compression: false`), the batch limit, AC updates unless the instance's AC is `read_only`,
 * absolute symlinks allowed. Execution capabilities only for instances with an execution service backed by a
 * scheduler, with `supported_node_properties` = that scheduler's `supported_platform_properties`. API versions
 * 2.0–2.3. Unknown instances are NOT_FOUND with the known ones listed.
 *
 * @example
 * ```ts
 * import { createCapabilitiesService } from "./capabilities_service.ts";
 * const impl = createCapabilitiesService({
 *   instances: new Map([["main", { updateEnabled: true, execution: true }]]),
 * });
 * ```
 * @module
 */
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type Capabilities,
  Compressor_Value,
  DigestFunction_Value,
  SymlinkAbsolutePathStrategy_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { Code } from "../util/error.ts";
import { DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES } from "./cas_service.ts";
import { SUPPORTED_DIGEST_FUNCTIONS } from "./digest_function.ts";
import { createInstances } from "./instances.ts";

/** What one instance offers. */
export interface CapabilitiesInstance {
  /** AC updates allowed (false when the AC is `read_only` or there is no AC for the instance). */
  readonly updateEnabled: boolean;
  /** An execution service with a scheduler serves this instance. */
  readonly execution: boolean;
  /** Node properties the scheduler supports (`supported_node_properties`), if any. */
  readonly supportedNodeProperties?: readonly string[];
  /** ByteStream accepts `compressed-blobs/zstd/…` for this instance (default true). */
  readonly byteStreamZstd?: boolean;
  /** BatchUpdateBlobs accepts zstd for this instance (default true). */
  readonly batchZstd?: boolean;
}

/** Options of {@linkcode createCapabilitiesService}. */
export interface CapabilitiesServiceOptions {
  readonly instances: ReadonlyMap<string, CapabilitiesInstance>;
  /** Advertised `max_batch_total_size_bytes` (default 4 MiB). */
  readonly maxBatchTotalSizeBytes?: number;
}

/**
 * Builds the Capabilities implementation.
 *
 * @example
 * ```ts
 * const impl = createCapabilitiesService({ instances: new Map([["", { updateEnabled: true, execution: false }]]) });
 * ```
 */
export function createCapabilitiesService(
  options: CapabilitiesServiceOptions,
): Partial<ServiceImpl<typeof Capabilities>> {
  const instances = createInstances("Capabilities", options.instances, Code.NotFound);
  const maxBatch = BigInt(options.maxBatchTotalSizeBytes ?? DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES);
  const version = (minor: number) => ({ major: 2, minor, patch: 0, prerelease: "" });

  return {
    getCapabilities(req) {
      const inst = instances.get(req.instanceName);
      return {
        cacheCapabilities: {
          digestFunctions: [...SUPPORTED_DIGEST_FUNCTIONS],
          actionCacheUpdateCapabilities: { updateEnabled: inst.updateEnabled },
          maxBatchTotalSizeBytes: maxBatch,
          symlinkAbsolutePathStrategy: SymlinkAbsolutePathStrategy_Value.ALLOWED,
          supportedCompressors: inst.byteStreamZstd === false ? [] : [Compressor_Value.ZSTD],
          supportedBatchUpdateCompressors: inst.batchZstd === false ? [] : [Compressor_Value.ZSTD],
        },
        ...(inst.execution
          ? {
            executionCapabilities: {
              digestFunction: DigestFunction_Value.SHA256,
              digestFunctions: [...SUPPORTED_DIGEST_FUNCTIONS],
              execEnabled: true,
              executionPriorityCapabilities: {
                priorities: [{ minPriority: -2147483648, maxPriority: 2147483647 }],
              },
              supportedNodeProperties: [...(inst.supportedNodeProperties ?? [])],
            },
          }
          : {}),
        lowApiVersion: version(0),
        highApiVersion: version(3),
      };
    },
  };
}
