/**
 * The declarative table of NativeLink's config format (nativelink-config `cas_server.rs`, `stores.rs`,
 * `schedulers.rs`), plus Cairn's few extensions (worker `sandbox`, `sandbox_paths`, `allow_network_property`,
 * `limits`).
 *
 * Every store kind, scheduler kind, worker kind, service and listener is one entry here, and this is the only
 * place a field is described: the validator (`validate.ts`) is generic, the config types (`types.ts`) are
 * derived from these nodes, the store registry takes each kind's fields from `STORE_KIND_TABLE`, and
 * `walk_config.ts` finds references through `s.ref`. A field of NativeLink's format Cairn does not implement is
 * `s.unsupported()`: refused when present, absent from the types. To add a setting: add it here (with
 * `s.withDefault` when it has one), then use it. Old spellings (aliases, map forms, `experimental_s3_store`, `hash_verification_function`, the old
 * bytestream form) are accepted and normalized to one canonical shape.
 *
 * @example
 * ```ts
 * import { STORE_KINDS, ROOT } from "./nativelink_schema.ts";
 * Object.keys(STORE_KINDS.variants); // ["memory", "filesystem", ...]
 * ```
 * @module
 */
import { s, type VariantNode } from "./schema.ts";

/**
 * Stands for a nested store spec in the inferred types (the schema is recursive); `types.ts` replaces it with
 * `StoreSpec`.
 */
export interface NestedStore {
  readonly __nested: "store";
}

/** Stands for a nested scheduler spec in the inferred types; `types.ts` replaces it with `SchedulerSpec`. */
export interface NestedScheduler {
  readonly __nested: "scheduler";
}

/** A nested store spec (`backend`, `fast`, ...): the same union as a top-level store. */
const storeSpec = s.lazy<NestedStore>(() => STORE_KINDS);
const schedulerSpec = s.lazy<NestedScheduler>(() => SCHEDULER_KINDS);

const evictionPolicy = s.object({
  max_bytes: s.optional(s.size()),
  evict_bytes: s.optional(s.size()),
  max_seconds: s.optional(s.duration()),
  max_count: s.optional(s.int()),
});

const ERROR_CODES = [
  "Cancelled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
] as const;

const retry = s.object({
  /** Retries after the first attempt (default 0: one attempt). */
  max_retries: s.optional(s.int()),
  /** Base delay in seconds of the exponential back-off. */
  delay: s.optional(s.float()),
  /** Jitter fraction (0.5 → ±25 %). */
  jitter: s.optional(s.float()),
  /** gRPC code names to retry on (default: transient codes). */
  retry_on_errors: s.optional(s.array(s.enum(...ERROR_CODES))),
});

const clientTls = s.object({
  ca_file: s.optional(s.file()),
  cert_file: s.optional(s.file()),
  key_file: s.optional(s.file()),
  use_native_roots: s.optional(s.unsupported("give ca_file")),
});

const grpcEndpoint = s.object({
  /** `grpc://host:port` (plain HTTP/2) or `grpcs://host:port` (TLS). */
  address: s.string(),
  /** TLS files (PEM paths) for `grpcs://`. */
  tls_config: s.optional(clientTls),
  concurrency_limit: s.optional(s.unsupported()),
  connect_timeout_s: s.optional(s.unsupported()),
  tcp_keepalive_s: s.optional(s.unsupported()),
  /** HTTP/2 PING interval in seconds (default 30). */
  http2_keepalive_interval_s: s.optional(s.duration()),
  /** HTTP/2 PING timeout in seconds (default 20). */
  http2_keepalive_timeout_s: s.optional(s.duration()),
});

const direction = s.enum("both", "update", "get", "read_only");

/** Every store kind NativeLink knows, with its fields (by kind). */
export const STORE_KIND_TABLE = {
  memory: s.object({ eviction_policy: s.optional(evictionPolicy) }),
  filesystem: s.object({
    content_path: s.dir(),
    temp_path: s.dir(),
    read_buffer_size: s.optional(s.size()),
    eviction_policy: s.optional(evictionPolicy),
    block_size: s.optional(s.size()),
    max_concurrent_writes: s.optional(s.int()),
    /** Needs posix_fadvise, which Deno does not expose. */
    evict_page_cache: s.optional(s.unsupported()),
  }),
  noop: s.object({}),
  ref_store: s.object({ name: s.ref("store") }),
  verify: s.object({
    backend: storeSpec,
    verify_size: s.optional(s.bool()),
    verify_hash: s.optional(s.bool()),
    hash_verification_function: s.optional(s.enum("sha256", "blake3")),
  }, (v) => {
    // Older configs name the hash function; newer ones auto-detect it and say `verify_hash: true`.
    if (v.hash_verification_function === undefined) return v;
    const { hash_verification_function: _old, ...rest } = v;
    return { ...rest, verify_hash: v.verify_hash ?? true };
  }),
  compression: s.object({
    compression_algorithm: s.variant("compression algorithm", {
      lz4: s.object({ block_size: s.optional(s.size()), max_decode_block_size: s.optional(s.size()) }),
    }),
    backend: storeSpec,
  }),
  dedup: s.object({
    index_store: storeSpec,
    content_store: storeSpec,
    min_size: s.optional(s.size()),
    normal_size: s.optional(s.size()),
    max_size: s.optional(s.size()),
    max_concurrent_fetch_per_get: s.optional(s.int()),
  }),
  fast_slow: s.object({
    fast: storeSpec,
    fast_direction: s.optional(direction),
    slow: storeSpec,
    slow_direction: s.optional(direction),
    bypass_dedup_threshold_bytes: s.optional(s.unsupported()),
  }),
  size_partitioning: s.object({ size: s.size(), lower_store: storeSpec, upper_store: storeSpec }),
  shard: s.object({
    stores: s.array(s.object({ store: storeSpec, weight: s.optional(s.int()) })),
  }),
  existence_cache: s.object({ backend: storeSpec, eviction_policy: s.optional(evictionPolicy) }),
  completeness_checking: s.object({ backend: storeSpec, cas_store: storeSpec }),
  cache_metrics: s.unsupported(),
  redis_store: s.object({
    addresses: s.array(s.string()),
    key_prefix: s.optional(s.string()),
    mode: s.optional(s.enum("standard", "cluster", "sentinel")),
    response_timeout_s: s.optional(s.duration()),
    connection_timeout_s: s.optional(s.duration()),
    command_timeout_ms: s.optional(s.durationMs()),
    connection_timeout_ms: s.optional(s.durationMs()),
    read_chunk_size: s.optional(s.size()),
    connection_pool_size: s.optional(s.int()),
    max_chunk_uploads_per_update: s.optional(s.int()),
    max_client_permits: s.optional(s.int()),
    retry: s.optional(retry),
    experimental_pub_sub_channel: s.optional(s.unsupported()),
    broadcast_channel_capacity: s.optional(s.unsupported("deprecated in NativeLink; leave it out")),
    health_check_timeout_ms: s.optional(s.unsupported()),
    scan_count: s.optional(s.unsupported()),
    max_count_per_cursor: s.optional(s.unsupported()),
    enable_keyspace_notifications: s.optional(s.unsupported()),
    keyspace_notifications_db: s.optional(s.unsupported()),
    key_ttl_s: s.optional(s.unsupported()),
  }),
  experimental_cloud_object_store: s.object({
    provider: s.enum("aws", "gcs", "azure", "ontap", "r2", "oci"),
    region: s.optional(s.string()),
    bucket: s.string(),
    key_prefix: s.optional(s.string()),
    endpoint: s.optional(s.string()),
    retry: s.optional(retry),
    multipart_max_concurrent_uploads: s.optional(s.int()),
    max_retry_buffer_per_request: s.optional(s.unsupported()),
    consider_expired_after_s: s.optional(s.unsupported()),
    insecure_allow_http: s.optional(s.unsupported()),
    disable_http2: s.optional(s.unsupported()),
  }, (v) => {
    if (v.provider !== "aws") {
      return `provider "${String(v.provider)}" is not supported by Cairn yet; use "aws"`;
    }
    return v;
  }),
  ontap_s3_existence_cache: s.unsupported(),
  grpc: s.object({
    instance_name: s.withDefault(s.string(), ""),
    endpoints: s.array(grpcEndpoint),
    store_type: s.enum("cas", "ac"),
    retry: s.optional(retry),
    /** 0 = unlimited. */
    max_concurrent_requests: s.optional(s.int()),
    /** Connections per endpoint (default 1). */
    connections_per_endpoint: s.optional(s.int()),
    /** Per-RPC timeout in seconds (0 = none). */
    rpc_timeout_s: s.optional(s.duration()),
    use_legacy_resource_names: s.optional(s.unsupported()),
    /** Cairn: static headers sent with every request. */
    headers: s.optional(s.map(s.string(), "header")),
    forward_headers: s.optional(s.unsupported()),
    experimental_read_batching: s.optional(s.unsupported()),
    experimental_remote_cache_compression: s.optional(s.unsupported()),
  }),
  experimental_mongo: s.unsupported(),
};

/** A store spec: `{ <kind>: {...} }`. */
export const STORE_KINDS = s.variant("store kind", STORE_KIND_TABLE, {
  // Before NativeLink 0.6 the S3 store had its own kind; it is the AWS cloud object store now.
  experimental_s3_store: (body) => ["experimental_cloud_object_store", { provider: "aws", ...body }],
}) as VariantNode as VariantNode<NestedStore>;

const propertyType = s.enum("minimum", "exact", "priority", "ignore");

/** Every scheduler kind NativeLink knows (by kind). Nested schedulers are inline specs, not names. */
export const SCHEDULER_KIND_TABLE = {
  simple: s.object({
    supported_platform_properties: s.optional(s.map(propertyType, "platform property")),
    retain_completed_for_s: s.optional(s.duration()),
    client_action_timeout_s: s.optional(s.duration()),
    worker_timeout_s: s.optional(s.duration()),
    max_action_executing_timeout_s: s.optional(s.duration()),
    unacknowledged_kill_timeout_s: s.optional(s.duration()),
    /** Cairn: how long an action waits for a worker that could run it before it fails. */
    no_matching_worker_grace_s: s.optional(s.duration()),
    max_job_retries: s.optional(s.int()),
    allocation_strategy: s.optional(s.enum("least_recently_used", "most_recently_used")),
    experimental_backend: s.optional(s.variant("scheduler backend", {
      memory: null,
      redis: s.object({ redis_store: s.ref("store") }),
    })),
    worker_match_logging_interval_s: s.optional(s.unsupported()),
    fallback_match_interval_s: s.optional(s.unsupported()),
  }),
  grpc: s.unsupported(),
  cache_lookup: s.object({ ac_store: s.ref("store"), scheduler: schedulerSpec }),
  property_modifier: s.object({
    modifications: s.array(s.variant("property modification", {
      add: s.object({ name: s.string(), value: s.string() }),
      remove: s.string(),
      replace: s.object({
        name: s.string(),
        value: s.optional(s.string()),
        new_name: s.string(),
        new_value: s.optional(s.string()),
      }),
    })),
    scheduler: schedulerSpec,
  }),
  historical_resource: s.unsupported(),
};

/** A scheduler spec: `{ <kind>: {...} }`. */
export const SCHEDULER_KINDS = s.variant(
  "scheduler kind",
  SCHEDULER_KIND_TABLE,
) as VariantNode as VariantNode<NestedScheduler>;

const uploadStrategy = s.enum("success_only", "never", "everything", "failures_only");

/** The `local` worker (NativeLink's `LocalWorkerConfig`) plus Cairn's sandbox fields. */
export const LOCAL_WORKER = s.object({
  name: s.optional(s.string()),
  worker_api_endpoint: s.object({
    uri: s.string(),
    timeout: s.optional(s.duration()),
    tls_config: s.optional(clientTls),
    /** Cairn: the credential presented to the worker API (default `$CAIRN_WORKER_TOKEN`). */
    worker_token: s.optional(s.string()),
  }),
  max_action_timeout_s: s.optional(s.duration(), ["max_action_timeout"]),
  max_upload_timeout_s: s.optional(s.unsupported(), ["max_upload_timeout"]),
  max_cleanup_wait_s: s.optional(s.unsupported()),
  max_cleanup_backoff_ms: s.optional(s.unsupported()),
  max_inflight_tasks: s.optional(s.int()),
  timeout_handled_externally: s.optional(s.bool()),
  entrypoint: s.optional(s.string()),
  experimental_precondition_script: s.optional(s.string()),
  cas_fast_slow_store: s.ref("store"),
  upload_action_result: s.optional(s.object({
    ac_store: s.optional(s.ref("store")),
    upload_ac_results_strategy: s.optional(uploadStrategy),
    historical_results_store: s.optional(s.unsupported()),
    upload_historical_results_strategy: s.optional(s.unsupported()),
    success_message_template: s.optional(s.unsupported()),
    failure_message_template: s.optional(s.unsupported()),
  })),
  work_directory: s.dir(),
  platform_properties: s.withDefault(
    s.map(s.variant("platform property source", { values: s.array(s.string()), query_cmd: s.string() })),
    {},
  ),
  additional_environment: s.optional(s.map(
    s.variant("environment source", {
      property: s.string(),
      value: s.string(),
      from_environment: null,
      timeout_millis: null,
      side_channel_file: null,
      action_directory: null,
    }),
    "variable",
  )),
  directory_cache: s.optional(s.unsupported()),
  experimental_active_input_leases: s.optional(s.unsupported()),
  use_namespaces: s.optional(s.unsupported("actions always run in bwrap's namespaces; see sandbox")),
  use_mount_namespace: s.optional(s.unsupported("actions always run in bwrap's namespaces; see sandbox")),
  /** Cairn: how actions are isolated (`bwrap` by default where available). */
  sandbox: s.optional(s.enum("bwrap", "none")),
  /** Cairn: host paths bound read-only into the sandbox (toolchains, /usr, ...). */
  sandbox_paths: s.optional(s.array(s.path()), ["sandbox_read_only_paths"]),
  /** Cairn: the platform property that, set to on/true/1 by an action, gives it the host network. */
  allow_network_property: s.optional(s.string()),
  /** Cairn: per-action resource limits (0 = no limit); defaults in `src/worker/local_worker_spec.ts`. */
  limits: s.optional(s.object({
    max_processes: s.optional(s.int()),
    max_memory_bytes: s.optional(s.size()),
    max_file_size_bytes: s.optional(s.size()),
    max_output_bytes: s.optional(s.size()),
  })),
});

/** Worker kinds (NativeLink has one: `local`). */
export const WORKER_KINDS = s.variant("worker kind", { local: LOCAL_WORKER });

const httpCompression = s.enum("none", "gzip");

const tls = s.object({
  cert_file: s.file(),
  key_file: s.file(),
  client_ca_file: s.optional(s.file()),
  client_crl_file: s.optional(s.unsupported()),
  /** Seen in NativeLink's production guide: `ca_file` + `verify_client: true` (= `client_ca_file`). */
  ca_file: s.optional(s.file()),
  verify_client: s.optional(s.bool()),
}, (v) => {
  const { ca_file: caFile, verify_client: verify, ...rest } = v;
  const clientCa = rest.client_ca_file ?? (verify === false ? undefined : caFile);
  if (verify === true && clientCa === undefined) return "verify_client needs client_ca_file (or ca_file)";
  const out: { cert_file: string; key_file: string; client_ca_file?: string; verify_client: boolean } = {
    ...rest,
    verify_client: clientCa !== undefined,
  };
  if (clientCa !== undefined) out.client_ca_file = clientCa;
  return out;
});

const advancedHttp = s.object({
  http2_keep_alive_interval: s.optional(s.int(), ["http2_keepalive_interval"]),
  experimental_http2_max_pending_accept_reset_streams: s.optional(s.unsupported()),
  experimental_http2_initial_stream_window_size: s.optional(s.int()),
  experimental_http2_initial_connection_window_size: s.optional(s.int()),
  experimental_http2_adaptive_window: s.optional(s.unsupported()),
  experimental_http2_max_frame_size: s.optional(s.int()),
  experimental_http2_max_concurrent_streams: s.optional(s.int(), ["max_concurrent_streams"]),
  experimental_http2_keep_alive_timeout_s: s.optional(s.int(), [
    "experimental_http2_keep_alive_timeout",
    "http2_keepalive_timeout",
  ]),
  experimental_http2_max_send_buf_size: s.optional(s.unsupported()),
  experimental_http2_enable_connect_protocol: s.optional(s.unsupported()),
  experimental_http2_max_header_list_size: s.optional(s.int()),
});

/** Cairn's per-listener resource limits against abusive clients (see tests/security/README.md). */
const listenerLimits = s.object({
  max_uploads_per_connection: s.optional(s.int()),
  max_uploads: s.optional(s.int()),
  upload_idle_timeout_s: s.optional(s.duration()),
  header_timeout_s: s.optional(s.duration()),
  idle_connection_timeout_s: s.optional(s.duration()),
  max_resets_per_second: s.optional(s.int()),
});

/** Listener kinds (NativeLink has one: `http`). */
export const LISTENER_KINDS = s.variant("listener kind", {
  http: s.object({
    socket_address: s.string(),
    freebind: s.optional(s.unsupported()),
    compression: s.optional(s.object({
      send_compression_algorithm: s.optional(httpCompression),
      accepted_compression_algorithms: s.withDefault(s.array(httpCompression), []),
    })),
    advanced_http: s.optional(advancedHttp),
    max_decoding_message_size: s.optional(s.size()),
    tls: s.optional(tls),
    cors_allowed_origins: s.withDefault(s.array(s.string()), []),
    limits: s.optional(listenerLimits),
    /** Cairn extension: the HTTP server under the listener (see README "Server paths"). */
    server: s.optional(s.enum("node_http2", "deno_serve")),
  }, (v) => {
    if (v.server !== "deno_serve") return v;
    if ((v.tls as { verify_client?: boolean } | undefined)?.verify_client) {
      return `server "deno_serve" cannot verify client certificates; mTLS needs server "node_http2"`;
    }
    if (v.advanced_http !== undefined) {
      return `server "deno_serve" uses Deno's own HTTP/2 settings; advanced_http needs server "node_http2"`;
    }
    const l = v.limits as Record<string, unknown> | undefined;
    for (const k of ["header_timeout_s", "idle_connection_timeout_s", "max_resets_per_second"]) {
      if (l?.[k] !== undefined) {
        return `server "deno_serve" uses Deno's own connection timeouts; limits.${k} needs server "node_http2"`;
      }
    }
    return v;
  }),
});

const bytestreamEntry = s.object({
  cas_store: s.ref("store"),
  max_bytes_per_stream: s.optional(s.size()),
  persist_stream_on_disconnect_timeout_s: s.optional(s.duration(), ["persist_stream_on_disconnect_timeout"]),
});

/** The services a server can host. Per-instance ones accept the array and the older map form. */
export const SERVICES = s.object({
  cas: s.optional(s.instanceList(s.object({
    cas_store: s.ref("store"),
    experimental_chunking: s.optional(s.unsupported()),
  }))),
  ac: s.optional(s.instanceList(s.object({ ac_store: s.ref("store"), read_only: s.optional(s.bool()) }))),
  capabilities: s.optional(s.instanceList(s.object({
    remote_execution: s.optional(s.object({ scheduler: s.ref("scheduler") })),
    remote_cache_compression: s.optional(s.bool()),
  }))),
  execution: s.optional(
    s.instanceList(s.object({ cas_store: s.ref("store"), scheduler: s.ref("scheduler") })),
  ),
  bytestream: s.optional(s.bytestream(
    bytestreamEntry,
    s.object({
      cas_stores: s.map(s.ref("store"), "instance name"),
      max_bytes_per_stream: s.optional(s.size()),
      max_decoding_message_size: s.optional(s.unsupported("set listener.http.max_decoding_message_size")),
      persist_stream_on_disconnect_timeout_s: s.optional(s.duration(), [
        "persist_stream_on_disconnect_timeout",
      ]),
    }),
  )),
  fetch: s.optional(s.instanceList(s.object({ fetch_store: s.ref("store") }))),
  push: s.optional(s.instanceList(s.object({ push_store: s.ref("store"), read_only: s.optional(s.bool()) }))),
  worker_api: s.optional(s.object({
    scheduler: s.ref("scheduler"),
    disable_kill_revoked_operations: s.optional(s.unsupported()),
    kill_revoked_operations_interval_s: s.optional(s.unsupported()),
    /** Cairn: the token workers must present (default `$CAIRN_WORKER_TOKEN`). */
    worker_token: s.optional(s.string()),
  })),
  experimental_bep: s.optional(s.unsupported()),
  admin: s.optional(s.unsupported()),
  health: s.optional(s.object({ path: s.optional(s.string()), timeout_seconds: s.optional(s.duration()) })),
  experimental_prometheus: s.optional(s.object({ path: s.optional(s.string()) })),
});

const PERMISSIONS = ["read", "write_cas", "write_ac", "execute"];
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/** Cairn: a server's client authentication (`auth`). */
const auth = s.object({
  anonymous: s.withDefault(s.enum("full", "read", "none"), "none"),
  users: s.withDefault(
    s.array(s.object({
      name: s.string(),
      token_sha256: s.optional(s.string()),
      password_sha256: s.optional(s.string()),
      mtls_subject: s.optional(s.string()),
      permissions: s.map(s.array(s.enum(...PERMISSIONS)), "instance name"),
    }, (u) => {
      for (const key of ["token_sha256", "password_sha256"] as const) {
        const v = u[key];
        if (v !== undefined && !SHA256_HEX.test(String(v))) {
          return `${key} must be 64 hex digits (printf %s SECRET | sha256sum)`;
        }
      }
      if (u.token_sha256 === undefined && u.password_sha256 === undefined && !u.mtls_subject) {
        return `user "${u.name}" needs token_sha256, password_sha256 or mtls_subject`;
      }
      if (typeof u.name === "string" && u.name.includes(":") && u.password_sha256 !== undefined) {
        return `user "${u.name}": a name used with Basic credentials cannot contain ":"`;
      }
      return u;
    })),
    [],
  ),
}, (a) => {
  const names = new Set<string>();
  for (const u of a.users as { name: string }[]) {
    if (names.has(u.name)) return `users: the name "${u.name}" is used twice`;
    names.add(u.name);
  }
  return a;
});

/** One server: a listener and the services it hosts. */
export const SERVER = s.object({
  name: s.optional(s.string()),
  listener: LISTENER_KINDS,
  /** Cairn: client authentication and per-instance permissions. */
  auth: s.optional(auth),
  services: s.withDefault(SERVICES, {}),
  experimental_identity_header: s.optional(s.unsupported()),
});

/** Process-wide settings. */
export const GLOBAL = s.object(
  {
    max_open_files: s.optional(s.unsupported("raise the limit with ulimit -n")),
    /** Cairn hashes with SHA-256 only. */
    default_digest_hash_function: s.optional(s.enum("sha256", "blake3")),
    default_digest_size_health_check: s.optional(s.unsupported()),
    disable_metrics: s.optional(s.unsupported("leave experimental_prometheus out instead")),
  },
  (v) =>
    v.default_digest_hash_function === "blake3"
      ? "default_digest_hash_function: blake3 is not supported by Cairn yet"
      : v,
);

/** The whole config file. */
export const ROOT = s.object({
  stores: s.withDefault(s.namedList(STORE_KINDS), []),
  schedulers: s.withDefault(s.namedList(SCHEDULER_KINDS), []),
  workers: s.withDefault(s.array(WORKER_KINDS), []),
  servers: s.withDefault(s.array(SERVER), []),
  experimental_origin_events: s.optional(s.unsupported()),
  global: s.optional(GLOBAL),
});
