/**
 * The canonical config types: what `parseConfig` / `loadConfig` (`load_config.ts`) hand out after
 * validating a NativeLink-format config against `nativelink_schema.ts` and normalizing it. Every type here is
 * derived from that schema with {@linkcode Infer}; nothing is written twice. To add a field, add it to
 * `nativelink_schema.ts` (its type follows); fields marked `s.unsupported()` there are absent here.
 *
 * Normalization means: stores and schedulers are arrays of `{ name, <kind>: {...} }`; per-instance services
 * are arrays of `{ instance_name, ... }`; old spellings and aliases are gone; sizes are numbers of bytes,
 * durations numbers of seconds (`*_ms` fields: milliseconds); `${VAR}` is expanded; defaulted fields are
 * present. Field names are NativeLink's (snake_case).
 *
 * @example
 * ```ts
 * import type { CairnConfig, StoreSpec } from "./types.ts";
 * import { loadConfig } from "./load_config.ts";
 * const config: CairnConfig = await loadConfig("config/local.json5");
 * const spec: StoreSpec = { memory: { eviction_policy: { max_bytes: 1_000_000 } } };
 * ```
 * @module
 */
import type {
  GLOBAL,
  LOCAL_WORKER,
  NestedScheduler,
  NestedStore,
  ROOT,
  SCHEDULER_KIND_TABLE,
  SERVER,
  SERVICES,
  STORE_KIND_TABLE,
} from "./nativelink_schema.ts";
import type { Infer, Unsupported } from "./schema.ts";

/** Replaces the recursion placeholders of the schema with the real spec types. */
type Resolve<T> = T extends NestedStore & { name: string } ? NamedStoreSpec
  : T extends NestedScheduler & { name: string } ? NamedSchedulerSpec
  : T extends NestedStore ? StoreSpec
  : T extends NestedScheduler ? SchedulerSpec
  : T extends readonly (infer U)[] ? Resolve<U>[]
  : T extends object ? { [K in keyof T]: Resolve<T[K]> }
  : T;

/** Bodies by kind of a kind table, unsupported kinds left out. */
type KindBodies<V> = {
  -readonly [K in keyof V as Infer<V[K]> extends Unsupported ? never : K]: Resolve<Infer<V[K]>>;
};

/** `{ kind: body }` for exactly one kind of `Kinds`. */
type OneOf<Kinds> = { [K in keyof Kinds]: { [P in K]: Kinds[K] } }[keyof Kinds];

// ---------------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------------

/** The body of every store kind Cairn implements, by kind. Nested stores are inline {@linkcode StoreSpec}s. */
export type StoreKinds = KindBodies<typeof STORE_KIND_TABLE>;

/** A store kind name. */
export type StoreKind = keyof StoreKinds;

/** A store spec: exactly one kind key, e.g. `{ memory: {...} }`. */
export type StoreSpec = OneOf<StoreKinds>;

/** The spec of one store kind, e.g. `StoreSpecOf<"memory">` is `{ memory: {...} }`. */
export type StoreSpecOf<K extends StoreKind> = { [P in K]: StoreKinds[K] };

/** A top-level store: a spec plus its name. */
export type NamedStoreSpec = StoreSpec & { name: string };

/** When a store drops entries. Unset limits do not apply. */
export type EvictionPolicy = NonNullable<StoreKinds["memory"]["eviction_policy"]>;

/** Retry with exponential backoff (NativeLink's `Retry`). */
export type RetryConfig = NonNullable<StoreKinds["grpc"]["retry"]>;

/** gRPC status names a retry may apply to. */
export type RetryErrorCode = NonNullable<RetryConfig["retry_on_errors"]>[number];

/** One endpoint of a gRPC store. */
export type GrpcEndpoint = StoreKinds["grpc"]["endpoints"][number];

/** TLS of an outgoing connection (NativeLink's `ClientTlsConfig`). */
export type ClientTlsConfig = NonNullable<GrpcEndpoint["tls_config"]>;

/** `experimental_cloud_object_store` (the old `experimental_s3_store` is its `aws` provider). */
export type CloudObjectStoreSpec = StoreKinds["experimental_cloud_object_store"];

/** Which operations of a `fast_slow` side are passed through. */
export type StoreDirection = NonNullable<StoreKinds["fast_slow"]["fast_direction"]>;

// ---------------------------------------------------------------------------------------------------------
// Schedulers
// ---------------------------------------------------------------------------------------------------------

/** The body of every scheduler kind Cairn implements, by kind. Nested schedulers are inline specs. */
export type SchedulerKinds = KindBodies<typeof SCHEDULER_KIND_TABLE>;

/** A scheduler kind name. */
export type SchedulerKind = keyof SchedulerKinds;

/** A scheduler spec: exactly one kind key, e.g. `{ simple: {...} }`. */
export type SchedulerSpec = OneOf<SchedulerKinds>;

/** A top-level scheduler: a spec plus its name. */
export type NamedSchedulerSpec = SchedulerSpec & { name: string };

/** How a worker's platform property matches an action's. */
export type PropertyType = NonNullable<SchedulerKinds["simple"]["supported_platform_properties"]>[string];

/** One edit of an action's platform properties (`property_modifier`). */
export type PropertyModification = SchedulerKinds["property_modifier"]["modifications"][number];

// ---------------------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------------------

/** The `local` worker (NativeLink's `LocalWorkerConfig`) plus Cairn's sandbox fields. */
export type LocalWorkerConfig = Infer<typeof LOCAL_WORKER>;

/** Where a worker's platform property values come from. */
export type WorkerProperty = LocalWorkerConfig["platform_properties"][string];

/** Where an `additional_environment` variable's value comes from. */
export type EnvironmentSource = NonNullable<LocalWorkerConfig["additional_environment"]>[string];

/** When a worker uploads action results. */
export type UploadResultsStrategy = NonNullable<
  NonNullable<LocalWorkerConfig["upload_action_result"]>["upload_ac_results_strategy"]
>;

/**
 * Cairn: per-action resource limits of a `local` worker. Each is optional (defaults in
 * `src/worker/local_worker_spec.ts`); 0 turns a limit off.
 */
export type ActionLimitsConfig = NonNullable<LocalWorkerConfig["limits"]>;

/** A worker spec (NativeLink has one kind: `local`). */
export type WorkerSpec = { local: LocalWorkerConfig };

// ---------------------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------------------

/** One server: a listener and the services it hosts. */
export type ServerConfig = Infer<typeof SERVER>;

/** The `http` listener of a server. */
export type HttpListenerConfig = ServerConfig["listener"]["http"];

/** Server TLS, normalized: `ca_file` + `verify_client` became `client_ca_file`. */
export type TlsConfig = NonNullable<HttpListenerConfig["tls"]>;

/** HTTP/2 tuning of a listener (NativeLink's `advanced_http`). */
export type AdvancedHttpConfig = NonNullable<HttpListenerConfig["advanced_http"]>;

/** gRPC compression algorithms of a listener. */
export type HttpCompressionAlgorithm = NonNullable<HttpListenerConfig["compression"]>[
  "accepted_compression_algorithms"
][number];

/** The HTTP server implementations a listener can run on (Cairn extension, see README "Server paths"). */
export type ListenerServer = NonNullable<HttpListenerConfig["server"]>;

/** Per-listener resource limits (Cairn extension); 0 or absent → the default. */
export type ListenerLimitsConfig = NonNullable<HttpListenerConfig["limits"]>;

/** A per-instance service entry: its settings plus `instance_name` (default `""`). */
export type WithInstanceName<T> = T & { instance_name: string };

/**
 * The services of one server. A key that is present (even `[]` or `{}`) enables the service; per-instance
 * services are arrays (the older map forms and the old bytestream form are normalized to these).
 */
export type ServicesConfig = Infer<typeof SERVICES>;

/** Client authentication of one server (Cairn). */
export type AuthConfig = NonNullable<ServerConfig["auth"]>;

/** One client identity of a server's `auth` section (Cairn). */
export type AuthUserConfig = AuthConfig["users"][number];

/** What a client may do on an instance. */
export type AuthPermission = AuthUserConfig["permissions"][string][number];

/** Process-wide settings. */
export type GlobalConfig = Infer<typeof GLOBAL>;

/** A whole validated config. The four lists default to `[]`. */
export type CairnConfig = Resolve<Infer<typeof ROOT>>;
