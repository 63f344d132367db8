/**
 * The canonical config types: what `parseConfig` / `loadConfig` (`load_config.ts`) hand out after
 * validating a NativeLink-format config against `nativelink_schema.ts` and normalizing it.
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

// ---------------------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------------------

/** When a store drops entries. Unset limits do not apply. */
export interface EvictionPolicy {
  /** Evict once the store holds more than this many bytes. */
  max_bytes?: number;
  /** When evicting, drop down to `max_bytes - evict_bytes`. */
  evict_bytes?: number;
  /** Evict entries not touched for this many seconds. */
  max_seconds?: number;
  /** Evict once the store holds more than this many entries. */
  max_count?: number;
}

/** gRPC status names a retry may apply to. */
export type RetryErrorCode =
  | "Cancelled"
  | "Unknown"
  | "InvalidArgument"
  | "DeadlineExceeded"
  | "NotFound"
  | "AlreadyExists"
  | "PermissionDenied"
  | "ResourceExhausted"
  | "FailedPrecondition"
  | "Aborted"
  | "OutOfRange"
  | "Unimplemented"
  | "Internal"
  | "Unavailable"
  | "DataLoss"
  | "Unauthenticated";

/** Retry with exponential backoff (NativeLink's `Retry`). */
export interface RetryConfig {
  max_retries?: number;
  /** Base delay in seconds. */
  delay?: number;
  /** Jitter fraction applied to each delay. */
  jitter?: number;
  retry_on_errors?: RetryErrorCode[];
}

/** TLS of an outgoing connection (NativeLink's `ClientTlsConfig`). */
export interface ClientTlsConfig {
  ca_file?: string;
  cert_file?: string;
  key_file?: string;
  use_native_roots?: boolean;
}

/** One endpoint of a gRPC store or scheduler. */
export interface GrpcEndpoint {
  /** `grpc://host:port` or `grpcs://host:port`. */
  address: string;
  tls_config?: ClientTlsConfig;
  concurrency_limit?: number;
  connect_timeout_s?: number;
  tcp_keepalive_s?: number;
  http2_keepalive_interval_s?: number;
  http2_keepalive_timeout_s?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------------

/** Fields every cloud object store provider shares (NativeLink's `CommonObjectSpec`). */
export interface CommonObjectSpec {
  key_prefix?: string;
  retry?: RetryConfig;
  consider_expired_after_s?: number;
  max_retry_buffer_per_request?: number;
  multipart_max_concurrent_uploads?: number;
  insecure_allow_http?: boolean;
  disable_http2?: boolean;
}

/** Amazon S3 (and S3-compatible stores through Cairn's `endpoint`). */
export interface AwsObjectSpec extends CommonObjectSpec {
  region?: string;
  bucket?: string;
  /** Cairn extension: a custom S3 endpoint (MinIO, s3rver, ...). */
  endpoint?: string;
}

/** Google Cloud Storage. */
export interface GcsObjectSpec extends CommonObjectSpec {
  bucket?: string;
  resumable_chunk_size?: number;
  authentication_required?: boolean;
  connection_timeout_s?: number;
  read_timeout_s?: number;
}

/** Azure Blob Storage. */
export interface AzureObjectSpec extends CommonObjectSpec {
  account_name?: string;
  container?: string;
  endpoint?: string;
  sas_url?: string;
}

/** NetApp ONTAP S3. */
export interface OntapObjectSpec extends CommonObjectSpec {
  endpoint: string;
  vserver_name: string;
  bucket: string;
  root_certificates?: string;
}

/** Cloudflare R2. */
export interface R2ObjectSpec extends CommonObjectSpec {
  account_id: string;
  bucket: string;
  access_key_id?: string;
  secret_access_key?: string;
}

/** Oracle Cloud Infrastructure object storage. */
export interface OciObjectSpec extends CommonObjectSpec {
  namespace: string;
  region: string;
  bucket: string;
  access_key_id?: string;
  secret_access_key?: string;
}

/** `experimental_cloud_object_store`: tagged by `provider` (the old `experimental_s3_store` is `aws`). */
export type CloudObjectStoreSpec =
  | ({ provider: "aws" } & AwsObjectSpec)
  | ({ provider: "gcs" } & GcsObjectSpec)
  | ({ provider: "azure" } & AzureObjectSpec)
  | ({ provider: "ontap" } & OntapObjectSpec)
  | ({ provider: "r2" } & R2ObjectSpec)
  | ({ provider: "oci" } & OciObjectSpec);

/** Which operations of a `fast_slow` side are passed through. */
export type StoreDirection = "both" | "update" | "get" | "read_only";

/** The body of every store kind, by kind. Nested stores are inline {@linkcode StoreSpec}s. */
export interface StoreKinds {
  memory: { eviction_policy?: EvictionPolicy };
  filesystem: {
    content_path: string;
    temp_path: string;
    read_buffer_size?: number;
    eviction_policy?: EvictionPolicy;
    block_size?: number;
    max_concurrent_writes?: number;
    evict_page_cache?: boolean;
  };
  noop: Record<string, never>;
  /** Refers to a top-level store by name. */
  ref_store: { name: string };
  verify: {
    backend: StoreSpec;
    verify_size?: boolean;
    /** `hash_verification_function` in older configs becomes `verify_hash: true`. */
    verify_hash?: boolean;
  };
  compression: {
    compression_algorithm: { lz4: { block_size?: number; max_decode_block_size?: number } };
    backend: StoreSpec;
  };
  dedup: {
    index_store: StoreSpec;
    content_store: StoreSpec;
    min_size?: number;
    normal_size?: number;
    max_size?: number;
    max_concurrent_fetch_per_get?: number;
  };
  fast_slow: {
    fast: StoreSpec;
    fast_direction?: StoreDirection;
    slow: StoreSpec;
    slow_direction?: StoreDirection;
    bypass_dedup_threshold_bytes?: number;
  };
  size_partitioning: { size: number; lower_store: StoreSpec; upper_store: StoreSpec };
  shard: { stores: { store: StoreSpec; weight?: number }[] };
  existence_cache: { backend: StoreSpec; eviction_policy?: EvictionPolicy };
  completeness_checking: { backend: StoreSpec; cas_store: StoreSpec };
  cache_metrics: { cache_type: string; backend: StoreSpec };
  redis_store: {
    addresses: string[];
    response_timeout_s?: number;
    connection_timeout_s?: number;
    experimental_pub_sub_channel?: string;
    key_prefix?: string;
    mode?: "cluster" | "sentinel" | "standard";
    broadcast_channel_capacity?: number;
    command_timeout_ms?: number;
    connection_timeout_ms?: number;
    health_check_timeout_ms?: number;
    read_chunk_size?: number;
    connection_pool_size?: number;
    key_ttl_s?: number;
    max_chunk_uploads_per_update?: number;
    scan_count?: number;
    retry?: RetryConfig;
    max_client_permits?: number;
    max_count_per_cursor?: number;
  };
  experimental_cloud_object_store: CloudObjectStoreSpec;
  ontap_s3_existence_cache: {
    index_path: string;
    sync_interval_seconds: number;
    backend: OntapObjectSpec;
  };
  grpc: {
    /** Default `""`. */
    instance_name: string;
    endpoints: GrpcEndpoint[];
    store_type: "cas" | "ac";
    retry?: RetryConfig;
    max_concurrent_requests?: number;
    connections_per_endpoint?: number;
    rpc_timeout_s?: number;
    use_legacy_resource_names?: boolean;
    headers?: Record<string, string>;
    forward_headers?: string[];
    experimental_read_batching?: {
      max_blob_size_bytes?: number;
      max_batch_bytes?: number;
      dispatch_slots?: number;
      max_queued_bytes?: number;
    };
    experimental_remote_cache_compression?: boolean;
  };
  experimental_mongo: {
    connection_string: string;
    database?: string;
    cas_collection?: string;
    scheduler_collection?: string;
    key_prefix?: string;
    read_chunk_size?: number;
    max_concurrent_uploads?: number;
    connection_timeout_ms?: number;
    command_timeout_ms?: number;
    enable_change_streams?: boolean;
    write_concern_w?: string;
    write_concern_j?: boolean;
    write_concern_timeout_ms?: number;
    max_requests?: number;
  };
}

/** A store kind name. */
export type StoreKind = keyof StoreKinds;

/** A store spec: exactly one kind key, e.g. `{ memory: {...} }`. */
export type StoreSpec = { [K in StoreKind]: { [P in K]: StoreKinds[K] } }[StoreKind];

/** A top-level store: a spec plus its name. */
export type NamedStoreSpec = StoreSpec & { name: string };

// ---------------------------------------------------------------------------------------------------------
// Schedulers
// ---------------------------------------------------------------------------------------------------------

/** How a worker's platform property matches an action's. */
export type PropertyType = "minimum" | "exact" | "priority" | "ignore";

/** One edit of an action's platform properties (`property_modifier`). */
export type PropertyModification =
  | { add: { name: string; value: string } }
  | { remove: string }
  | { replace: { name: string; value?: string; new_name: string; new_value?: string } };

/** The body of every scheduler kind, by kind. Nested schedulers are inline {@linkcode SchedulerSpec}s. */
export interface SchedulerKinds {
  simple: {
    supported_platform_properties?: Record<string, PropertyType>;
    retain_completed_for_s?: number;
    client_action_timeout_s?: number;
    worker_timeout_s?: number;
    max_action_executing_timeout_s?: number;
    unacknowledged_kill_timeout_s?: number;
    /** Cairn: how long an action waits for a worker that could run it before it fails. */
    no_matching_worker_grace_s?: number;
    max_job_retries?: number;
    allocation_strategy?: "least_recently_used" | "most_recently_used";
    /** `"memory"`, or a Redis store (by name). */
    experimental_backend?: "memory" | { redis: { redis_store: string } };
    /** May be negative (disables the periodic log). */
    worker_match_logging_interval_s?: number;
    /** May be negative. */
    fallback_match_interval_s?: number;
  };
  grpc: {
    endpoint: GrpcEndpoint;
    retry?: RetryConfig;
    max_concurrent_requests?: number;
    connections_per_endpoint?: number;
  };
  cache_lookup: { ac_store: string; scheduler: SchedulerSpec };
  property_modifier: { modifications: PropertyModification[]; scheduler: SchedulerSpec };
  historical_resource: {
    hints_file: string;
    refresh_interval_s?: number;
    cpu_property_name?: string;
    memory_property_name?: string;
    scheduler: SchedulerSpec;
  };
}

/** A scheduler kind name. */
export type SchedulerKind = keyof SchedulerKinds;

/** A scheduler spec: exactly one kind key, e.g. `{ simple: {...} }`. */
export type SchedulerSpec = { [K in SchedulerKind]: { [P in K]: SchedulerKinds[K] } }[SchedulerKind];

/** A top-level scheduler: a spec plus its name. */
export type NamedSchedulerSpec = SchedulerSpec & { name: string };

// ---------------------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------------------

/** Where a worker's platform property values come from. */
export type WorkerProperty = { values: string[] } | { query_cmd: string };

/** Where an `additional_environment` variable's value comes from. */
export type EnvironmentSource =
  | { property: string }
  | { value: string }
  | "from_environment"
  | "timeout_millis"
  | "side_channel_file"
  | "action_directory";

/** When a worker uploads action results. */
export type UploadResultsStrategy = "success_only" | "never" | "everything" | "failures_only";

/** The `local` worker (NativeLink's `LocalWorkerConfig`) plus Cairn's sandbox fields. */
export interface LocalWorkerConfig {
  name?: string;
  worker_api_endpoint: {
    uri: string;
    /** Seconds. */
    timeout?: number;
    tls_config?: ClientTlsConfig;
    /**
     * Cairn: the credential presented to the worker API (`authorization: Bearer …`). Default:
     * `$CAIRN_WORKER_TOKEN`, or the one a parent Cairn hands the worker processes it spawns.
     */
    worker_token?: string;
  };
  /** `max_action_timeout` in older configs. */
  max_action_timeout_s?: number;
  /** `max_upload_timeout` in older configs. */
  max_upload_timeout_s?: number;
  max_cleanup_wait_s?: number;
  max_cleanup_backoff_ms?: number;
  max_inflight_tasks?: number;
  timeout_handled_externally?: boolean;
  entrypoint?: string;
  experimental_precondition_script?: string;
  /** Name of a top-level (usually `fast_slow`) store. */
  cas_fast_slow_store: string;
  upload_action_result?: {
    ac_store?: string;
    upload_ac_results_strategy?: UploadResultsStrategy;
    historical_results_store?: string;
    upload_historical_results_strategy?: UploadResultsStrategy;
    success_message_template?: string;
    failure_message_template?: string;
  };
  work_directory: string;
  /** Default `{}`. */
  platform_properties: Record<string, WorkerProperty>;
  additional_environment?: Record<string, EnvironmentSource>;
  directory_cache?: {
    max_entries?: number;
    max_size_bytes?: number;
    cache_root?: string;
    experimental_subtree_caching?: boolean;
    max_concurrent_fetches?: number;
    experimental_get_tree_prefetch?: boolean;
  };
  experimental_active_input_leases?: boolean;
  use_namespaces?: boolean;
  use_mount_namespace?: boolean;
  /** Cairn: how actions are isolated (`bwrap` by default where available). */
  sandbox?: "bwrap" | "none";
  /** Cairn: host paths bound read-only into the sandbox (`sandbox_read_only_paths` is accepted too). */
  sandbox_paths?: string[];
  /** Cairn: the platform property that, set to on/true/1 by an action, gives it the host network. */
  allow_network_property?: string;
  /** Cairn: per-action resource limits (0 = no limit). */
  limits?: ActionLimitsConfig;
}

/**
 * Cairn: per-action resource limits of a `local` worker. Each is optional (default in parentheses); 0
 * turns a limit off. Processes, memory and file size are rlimits of the action's processes (`prlimit`).
 */
export interface ActionLimitsConfig {
  /** RLIMIT_NPROC: processes and threads of the action's user (4096). */
  max_processes?: number;
  /** RLIMIT_DATA per process (private writable memory), also the size of the sandbox's /tmp (half of RAM). */
  max_memory_bytes?: number;
  /** RLIMIT_FSIZE: largest file an action may write (8 GiB). */
  max_file_size_bytes?: number;
  /** Total apparent size of an action's outputs, and separately of its stdout + stderr (16 GiB). */
  max_output_bytes?: number;
}

/** A worker spec (NativeLink has one kind: `local`). */
export type WorkerSpec = { local: LocalWorkerConfig };

// ---------------------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------------------

/** Server TLS, normalized: `ca_file` + `verify_client` became `client_ca_file`. */
export interface TlsConfig {
  cert_file: string;
  key_file: string;
  /** CA that client certificates must chain to (mTLS). */
  client_ca_file?: string;
  client_crl_file?: string;
  /** True exactly when `client_ca_file` is set. */
  verify_client: boolean;
}

/** HTTP/2 tuning of a listener (NativeLink's `advanced_http`). */
export interface AdvancedHttpConfig {
  http2_keep_alive_interval?: number;
  experimental_http2_max_pending_accept_reset_streams?: number;
  experimental_http2_initial_stream_window_size?: number;
  experimental_http2_initial_connection_window_size?: number;
  experimental_http2_adaptive_window?: boolean;
  experimental_http2_max_frame_size?: number;
  experimental_http2_max_concurrent_streams?: number;
  /** Seconds. */
  experimental_http2_keep_alive_timeout_s?: number;
  experimental_http2_max_send_buf_size?: number;
  experimental_http2_enable_connect_protocol?: boolean;
  experimental_http2_max_header_list_size?: number;
}

/** gRPC compression algorithms of a listener. */
export type HttpCompressionAlgorithm = "none" | "gzip";

/** The `http` listener of a server. */
export interface HttpListenerConfig {
  /** `host:port`, `[v6]:port` or `:port`. */
  socket_address: string;
  freebind?: boolean;
  compression?: {
    send_compression_algorithm?: HttpCompressionAlgorithm;
    /** Default `[]`. */
    accepted_compression_algorithms: HttpCompressionAlgorithm[];
  };
  advanced_http?: AdvancedHttpConfig;
  /** Bytes. */
  max_decoding_message_size?: number;
  tls?: TlsConfig;
  /** Origins allowed cross-origin (CORS) access, e.g. `"http://localhost:3000"`. Default `[]`: none. */
  cors_allowed_origins: string[];
  /** Resource limits against abusive clients (Cairn extension). */
  limits?: ListenerLimitsConfig;
  /**
   * The HTTP server under the listener (Cairn extension): `"node_http2"` (default when unset; needed for mTLS,
   * `advanced_http` and the connection limits) or `"deno_serve"` (Deno.serve with gRPC trailers).
   */
  server?: ListenerServer;
}

/** The HTTP server implementations a listener can run on. */
export type ListenerServer = "node_http2" | "deno_serve";

/** Per-listener resource limits (Cairn extension); 0 or absent → the default. */
export interface ListenerLimitsConfig {
  /** Uploads (client-streaming gRPC calls, HTTP request bodies) at once on one connection. Default 64. */
  max_uploads_per_connection?: number;
  /** Uploads at once on the whole listener. Default 1024. */
  max_uploads?: number;
  /** Seconds an upload may go without sending a byte before it is ended. Default 30. */
  upload_idle_timeout_s?: number;
  /** Seconds a new connection has to send its first request's headers (HTTP/2: preface and first stream). Default 10. */
  header_timeout_s?: number;
  /** Seconds a connection with no request in flight is kept. Default 120. */
  idle_connection_timeout_s?: number;
  /** HTTP/2 streams a client may reset per second on one connection before it gets GOAWAY. Default 200. */
  max_resets_per_second?: number;
}

/** A per-instance service entry: its settings plus `instance_name` (default `""`). */
export type WithInstanceName<T> = T & { instance_name: string };

/**
 * The services of one server. A key that is present (even `[]` or `{}`) enables the service; per-instance
 * services are arrays (the older map forms and the old bytestream form are normalized to these).
 */
export interface ServicesConfig {
  cas?: WithInstanceName<{
    cas_store: string;
    experimental_chunking?: { index_store?: string; avg_chunk_size_bytes?: number; max_chunk_count?: number };
  }>[];
  ac?: WithInstanceName<{ ac_store: string; read_only?: boolean }>[];
  capabilities?: WithInstanceName<{
    remote_execution?: { scheduler: string };
    remote_cache_compression?: boolean;
  }>[];
  execution?: WithInstanceName<{ cas_store: string; scheduler: string }>[];
  bytestream?: WithInstanceName<{
    cas_store: string;
    /** Bytes. */
    max_bytes_per_stream?: number;
    /** Seconds (`persist_stream_on_disconnect_timeout` in older configs). */
    persist_stream_on_disconnect_timeout_s?: number;
  }>[];
  fetch?: WithInstanceName<{ fetch_store: string }>[];
  push?: WithInstanceName<{ push_store: string; read_only?: boolean }>[];
  worker_api?: {
    scheduler: string;
    disable_kill_revoked_operations?: boolean;
    kill_revoked_operations_interval_s?: number;
    /**
     * Cairn: the token workers must present (`authorization: Bearer …`), at least 16 characters. Default:
     * `$CAIRN_WORKER_TOKEN`; Cairn's own worker processes always get a generated credential.
     */
    worker_token?: string;
  };
  experimental_bep?: { store: string };
  admin?: { path?: string };
  health?: { path?: string; timeout_seconds?: number };
  experimental_prometheus?: { path?: string };
}

/** What a client may do on an instance. */
export type AuthPermission = "read" | "write_cas" | "write_ac" | "execute";

/** One client identity of a server's `auth` section (Cairn). */
export interface AuthUserConfig {
  /** The identity's name (also the user name of Basic credentials). */
  name: string;
  /** SHA-256 hex of the bearer token (`printf %s TOKEN | sha256sum`). */
  token_sha256?: string;
  /** SHA-256 hex of the password of Basic credentials (`grpc://name:password@host`). */
  password_sha256?: string;
  /** CN of a client certificate verified against the listener's `client_ca_file`. */
  mtls_subject?: string;
  /** Instance name (or `"*"` for every other instance) → permissions. */
  permissions: Record<string, AuthPermission[]>;
}

/** Client authentication of one server (Cairn). */
export interface AuthConfig {
  /** What clients without credentials may do. Default `"none"` once an `auth` section is written. */
  anonymous: "full" | "read" | "none";
  /** Default `[]`. */
  users: AuthUserConfig[];
}

/** One server: a listener and the services it hosts. */
export interface ServerConfig {
  name?: string;
  listener: { http: HttpListenerConfig };
  /**
   * Cairn: client authentication. Without it every client has full access (a warning is printed when the
   * listener is not on loopback).
   */
  auth?: AuthConfig;
  /** Default `{}`. */
  services: ServicesConfig;
  experimental_identity_header?: { header_name?: string; required?: boolean };
}

/** Process-wide settings. */
export interface GlobalConfig {
  max_open_files?: number;
  default_digest_hash_function?: "sha256" | "blake3";
  /** Bytes. */
  default_digest_size_health_check?: number;
  disable_metrics?: boolean;
}

/** A whole validated config. The four lists default to `[]`. */
export interface CairnConfig {
  stores: NamedStoreSpec[];
  schedulers: NamedSchedulerSpec[];
  workers: WorkerSpec[];
  servers: ServerConfig[];
  experimental_origin_events?: {
    publisher: { store: string };
    max_event_queue_size?: number;
  };
  global?: GlobalConfig;
}
