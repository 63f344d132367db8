/**
 * Services: the REAPI remote-cache services and plain HTTP endpoints of one server, built from that server's
 * canonical `services` config.
 *
 * `buildServiceBindings` maps `cas`, `ac`, `bytestream`, `capabilities` and `health` (plus Bazel's HTTP
 * cache and the gRPC health service) to transport bindings and HTTP routes. `execution`, `worker_api`
 * and other services are added by {@linkcode ServiceExtension}s (the scheduler side registers them); a
 * configured service nobody built is reported in `unhandled`.
 *
 * @example
 * ```ts ignore
 * import { buildServiceBindings } from "./mod.ts";
 * const built = buildServiceBindings({ services: server.services, stores, schedulers });
 * const server = createCairnServer({ bindings: built.bindings, routes: built.routes, … });
 * // at shutdown
 * built.close();
 * ```
 * @module
 */
import type { ServicesConfig } from "../config/types.ts";
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../gen/google/bytestream/bytestream_pb.ts";
import { Health } from "../gen/grpc/health/v1/health_pb.ts";
import { Fetch, Push } from "../gen/build/bazel/remote/asset/v1/remote_asset_pb.ts";
import type { StoreDriver, StoreLookup } from "../store/types.ts";
import type { HttpRoute, ServiceBinding } from "../transport/types.ts";
import { type AcInstance, createActionCacheService } from "./action_cache_service.ts";
import { type ByteStreamInstance, createByteStreamService } from "./byte_stream_service.ts";
import { type CapabilitiesInstance, createCapabilitiesService } from "./capabilities_service.ts";
import { type CasInstance, createCasService, DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES } from "./cas_service.ts";
import { createHealthService, type HealthServiceImpl } from "./health_service.ts";
import { createHttpCacheRoute, type HttpCacheInstance } from "./http_cache_route.ts";
import { createStatusRoute } from "./status_route.ts";
import { tracedStore } from "./store_tracing.ts";
import type { IoThread } from "../util/io_thread.ts";
import { createFetchService, createPushService } from "./remote_asset_service.ts";

export { type AcInstance, createActionCacheService, readActionResult } from "./action_cache_service.ts";
export { type ByteStreamInstance, createByteStreamService } from "./byte_stream_service.ts";
export { type CapabilitiesInstance, createCapabilitiesService } from "./capabilities_service.ts";
export { type CasInstance, createCasService, DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES } from "./cas_service.ts";
export { createHealthService, type HealthServiceImpl } from "./health_service.ts";
export { createHttpCacheRoute, type HttpCacheInstance } from "./http_cache_route.ts";
export { createStatusRoute, DEFAULT_STATUS_PATH } from "./status_route.ts";
export { createInstances, type Instances } from "./instances.ts";
export { checkDigestFunction } from "./digest_function.ts";
export { okStatus, statusFromError } from "./rpc_status.ts";
export { createFetchService, createPushService } from "./remote_asset_service.ts";

/** Anything that knows scheduler names (a `Map`, or the scheduler engineer's lookup). */
export interface SchedulerNames {
  has(name: string): boolean;
}

/** What an extension gets to build its services. */
export interface ServiceExtensionContext {
  readonly services: ServicesConfig;
  readonly stores: StoreLookup;
  readonly schedulers: SchedulerNames | undefined;
}

/** What an extension adds; `handles` names the config services it built (e.g. `["execution"]`). */
export interface ServiceExtensionResult {
  readonly handles: readonly (keyof ServicesConfig)[];
  readonly bindings?: readonly ServiceBinding[];
  readonly routes?: readonly HttpRoute[];
  readonly close?: () => void | Promise<void>;
}

/**
 * Builds extra services of a server (execution, worker_api, …). Returns undefined when it has nothing
 * to add for this server.
 */
export type ServiceExtension = (ctx: ServiceExtensionContext) => ServiceExtensionResult | undefined;

/** Options of {@linkcode buildServiceBindings}. */
export interface ServiceBindingsOptions {
  /** The server's canonical `services` config (arrays with `instance_name`, snake_case). */
  readonly services: ServicesConfig;
  /** Built stores by name (a `StoreManager`); `names()` lets the status route probe every store. */
  readonly stores: StoreLookup & { names?(): string[]; backends?(): [string, StoreDriver][] };
  /** Scheduler names, to tell which instances can execute (capabilities). */
  readonly schedulers?: SchedulerNames;
  /**
   * Per scheduler name, the platform properties it supports (its `supported_platform_properties` keys),
   * advertised as `supported_node_properties` by instances that execute on it.
   */
  readonly nodeProperties?: ReadonlyMap<string, readonly string[]>;
  /** Advertised and enforced batch limit (default 4 MiB). */
  readonly maxBatchTotalSizeBytes?: number;
  /** Serve Bazel's HTTP cache protocol for instances with both `cas` and `ac` (default true). */
  readonly httpCache?: boolean;
  /** Builders of execution, worker_api and other services. */
  readonly extensions?: readonly ServiceExtension[];
  /** The process's shared I/O thread (ByteStream hashes large uploads on it); the caller stops it. */
  readonly ioThread?: IoThread;
}

/** The result of {@linkcode buildServiceBindings}. */
export interface ServiceBindings {
  readonly bindings: ServiceBinding[];
  readonly routes: HttpRoute[];
  /** The gRPC health service, to flip to NOT_SERVING while draining. */
  readonly health: HealthServiceImpl;
  /** Configured services nothing built (e.g. `execution` without its extension). */
  readonly unhandled: (keyof ServicesConfig)[];
  /** Aborts uploads in progress and closes extensions. */
  close(): Promise<void>;
}

/** Services this module builds itself. */
const BUILT_HERE = new Set<keyof ServicesConfig>([
  "cas",
  "ac",
  "bytestream",
  "capabilities",
  "health",
  "fetch",
  "push",
]);

/**
 * Builds the bindings and routes of one server from its `services` config.
 *
 * @example
 * ```ts ignore
 * const { bindings, routes, unhandled } = buildServiceBindings({
 *   services: { cas: [{ instance_name: "main", cas_store: "CAS" }], ac: [{ instance_name: "main", ac_store: "AC" }] },
 *   stores,
 * });
 * ```
 */
export function buildServiceBindings(options: ServiceBindingsOptions): ServiceBindings {
  const { services, stores, schedulers } = options;
  const maxBatch = options.maxBatchTotalSizeBytes ?? DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;
  const bindings: ServiceBinding[] = [];
  const routes: HttpRoute[] = [];
  const closers: (() => void | Promise<void>)[] = [];
  const used = new Map<string, StoreDriver>();
  const store = (name: string) => {
    const s = stores.get(name);
    used.set(name, s);
    return tracedStore(name, s);
  };

  // zstd is on for an instance unless its capabilities entry says `remote_cache_compression: false`; the
  // CAS, ByteStream and Capabilities of the instance agree on it.
  const zstdOn = (instance: string) =>
    services.capabilities?.find((e) => e.instance_name === instance)?.remote_cache_compression !== false;

  const casByInstance = new Map<string, StoreDriver>();
  for (const e of services.bytestream ?? []) casByInstance.set(e.instance_name, store(e.cas_store));
  for (const e of services.cas ?? []) casByInstance.set(e.instance_name, store(e.cas_store));

  if (services.cas) {
    const instances = new Map<string, CasInstance>(
      services.cas.map((
        e,
      ) => [e.instance_name, { casStore: store(e.cas_store), zstd: zstdOn(e.instance_name) }]),
    );
    bindings.push({
      service: ContentAddressableStorage,
      impl: createCasService({ instances, maxBatchTotalSizeBytes: maxBatch }),
    });
  }

  if (services.ac) {
    const instances = new Map<string, AcInstance>(services.ac.map((e) => {
      const casStore = casByInstance.get(e.instance_name);
      return [e.instance_name, {
        acStore: store(e.ac_store),
        readOnly: e.read_only ?? false,
        ...(casStore ? { casStore } : {}),
      }];
    }));
    const impl = createActionCacheService({ instances, maxInlineBytes: maxBatch });
    bindings.push({ service: ActionCache, impl, encoded: impl.encoded });
  }

  if (services.bytestream) {
    const instances = new Map<string, ByteStreamInstance>(services.bytestream.map((e) => [e.instance_name, {
      casStore: store(e.cas_store),
      zstd: zstdOn(e.instance_name),
      ...(e.max_bytes_per_stream ? { maxBytesPerStream: e.max_bytes_per_stream } : {}),
      ...(e.persist_stream_on_disconnect_timeout_s
        ? { persistStreamOnDisconnectTimeoutS: e.persist_stream_on_disconnect_timeout_s }
        : {}),
    }]));
    const impl = createByteStreamService({
      instances,
      ...(options.ioThread ? { ioThread: options.ioThread } : {}),
    });
    closers.push(() => impl.close());
    bindings.push({ service: ByteStream, impl, encoded: impl.encoded });
  }

  if (services.capabilities) {
    const names = new Set<string>();
    for (const key of ["cas", "ac", "bytestream", "execution", "capabilities", "fetch", "push"] as const) {
      for (const e of services[key] ?? []) names.add(e.instance_name);
    }
    const hasScheduler = (name: string | undefined) =>
      name !== undefined && (schedulers === undefined || schedulers.has(name));
    const instances = new Map<string, CapabilitiesInstance>([...names].map((name) => {
      const ac = services.ac?.find((e) => e.instance_name === name);
      const cap = services.capabilities?.find((e) => e.instance_name === name);
      const exec = services.execution?.find((e) => e.instance_name === name);
      const scheduler = [cap?.remote_execution?.scheduler, exec?.scheduler].find(hasScheduler);
      const nodeProperties = scheduler === undefined ? undefined : options.nodeProperties?.get(scheduler);
      return [name, {
        updateEnabled: ac !== undefined && !ac.read_only,
        execution: scheduler !== undefined,
        ...(nodeProperties ? { supportedNodeProperties: nodeProperties } : {}),
        byteStreamZstd: zstdOn(name) && (services.bytestream ?? []).some((e) => e.instance_name === name),
        batchZstd: zstdOn(name) && (services.cas ?? []).some((e) => e.instance_name === name),
      }];
    }));
    bindings.push({
      service: Capabilities,
      impl: createCapabilitiesService({ instances, maxBatchTotalSizeBytes: maxBatch }),
    });
  }

  if (services.fetch) {
    const instances = new Map(services.fetch.map((e) => [e.instance_name, { store: store(e.fetch_store) }]));
    bindings.push({ service: Fetch, impl: createFetchService({ instances }) });
  }
  if (services.push) {
    const instances = new Map(
      services.push.map((
        e,
      ) => [e.instance_name, { store: store(e.push_store), readOnly: e.read_only ?? false }]),
    );
    bindings.push({ service: Push, impl: createPushService({ instances }) });
  }

  if (options.httpCache ?? true) {
    const instances = new Map<string, HttpCacheInstance>();
    for (const ac of services.ac ?? []) {
      const casStore = casByInstance.get(ac.instance_name);
      if (casStore) {
        instances.set(ac.instance_name, {
          casStore,
          acStore: store(ac.ac_store),
          readOnly: ac.read_only ?? false,
        });
      }
    }
    if (instances.size > 0) routes.push(createHttpCacheRoute({ instances }));
  }

  const unhandled: (keyof ServicesConfig)[] = [];
  const handled = new Set<keyof ServicesConfig>(BUILT_HERE);
  for (const extension of options.extensions ?? []) {
    const result = extension({ services, stores, schedulers });
    if (!result) continue;
    for (const h of result.handles) handled.add(h);
    bindings.push(...(result.bindings ?? []));
    routes.push(...(result.routes ?? []));
    if (result.close) closers.push(result.close);
  }
  for (const key of Object.keys(services) as (keyof ServicesConfig)[]) {
    if (services[key] !== undefined && !handled.has(key)) unhandled.push(key);
  }

  const health = createHealthService({
    services: bindings.map((b) => b.service.typeName).concat(Health.typeName),
  });
  bindings.push({ service: Health, impl: health });

  if (services.health) {
    const names = stores.names?.() ?? [...used.keys()];
    routes.push(createStatusRoute({
      // Top-level stores, and the outside services nested in them (which a top-level probe may not reach).
      stores: [...names.map((n) => [n, stores.get(n)] as const), ...(stores.backends?.() ?? [])],
      ...(services.health.path ? { path: services.health.path } : {}),
      ...(services.health.timeout_seconds ? { timeoutSeconds: services.health.timeout_seconds } : {}),
    }));
  }

  return {
    bindings,
    routes,
    health,
    unhandled,
    async close() {
      for (const c of closers) await c();
    },
  };
}
