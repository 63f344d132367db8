/**
 * The `local` worker's config (NativeLink's `LocalWorkerConfig`, snake_case as the config module hands it
 * over) plus Cairn's own fields, and their defaults.
 *
 * Cairn's fields:
 * - `sandbox`: `"bwrap"` (default) or `"none"` (explicit opt-out; without bwrap the worker refuses to start).
 * - `sandbox_paths`: host paths bound read-only into the sandbox (default: the system's `/usr`, `/bin`,
 *   `/lib`, `/lib64`, `/lib32`, `/etc`, `/sbin` that exist).
 * - `allow_network_property`: the name of a platform property that grants network access. An action whose
 *   platform (as matched by the scheduler) has this property with value `on` / `true` / `1` runs with the
 *   host network; every other action has none. The worker should also list the property among its
 *   `platform_properties` (e.g. `network: { values: ["on", "off"] }`) so the scheduler can match it.
 *   Unset (default): no action ever gets network.
 * - `limits`: per-action resource limits, each 0 for none:
 *   - `max_processes` (default 4096): RLIMIT_NPROC, processes and threads of the action's user. Actions
 *     of a root worker all run as one unprivileged uid (65534), so the count is shared by the actions
 *     running at once (and anything else running as that uid); a non-root worker's actions count with
 *     every process of the worker's user.
 *   - `max_memory_bytes` (default half of the machine's RAM, 4 GiB when unknown): RLIMIT_DATA of each
 *     process (private writable memory: heap, not address space, so JVMs and V8 that reserve large
 *     ranges still start), and the size of the sandbox's `/tmp` tmpfs.
 *   - `max_file_size_bytes` (default 8 GiB): RLIMIT_FSIZE; writing or truncating a file past it fails
 *     (SIGXFSZ, exit 153), so a sparse `truncate -s 1T` is refused.
 *   - `max_output_bytes` (default 16 GiB): the total apparent size of the output files (sparse files
 *     count in full), checked before anything is read or uploaded; and, separately, stdout plus stderr
 *     (the action is killed when they pass it). Over it the action fails with RESOURCE_EXHAUSTED.
 *
 * @example
 * ```ts
 * import { resolveLocalWorkerSpec } from "./local_worker_spec.ts";
 * const spec = resolveLocalWorkerSpec({
 *   worker_api_endpoint: { uri: "grpc://127.0.0.1:50061" },
 *   cas_fast_slow_store: "WORKER_CAS", work_directory: "/tmp/work", platform_properties: {},
 * });
 * console.log(spec.maxActionTimeoutS); // 1200
 * ```
 * @module
 */
import type {
  ActionLimitsConfig,
  ClientTlsConfig,
  EnvironmentSource,
  LocalWorkerConfig,
  WorkerProperty,
} from "../config/types.ts";
import { CairnError, Code } from "../util/error.ts";
import type { SandboxKind } from "./sandbox.ts";

/** The `local` worker config as written (plus Cairn's `allow_network_property`). */
export type LocalWorkerSpec =
  & Omit<LocalWorkerConfig, "platform_properties">
  & {
    platform_properties?: Record<string, WorkerProperty>;
    allow_network_property?: string;
  };

/** Upload strategies of `upload_action_result.upload_ac_results_strategy`. */
export type UploadStrategy = "success_only" | "never" | "everything" | "failures_only";

/** The config with defaults applied, in camelCase. */
export interface ResolvedWorkerSpec {
  readonly name: string;
  readonly endpoint: string;
  /** Seconds (default 5). */
  readonly endpointTimeoutS: number;
  /** `worker_api_endpoint.worker_token`, when configured. */
  readonly workerToken: string | undefined;
  /** `worker_api_endpoint.tls_config` (a `grpcs://` uri), when configured. */
  readonly endpointTls: ClientTlsConfig | undefined;
  readonly maxActionTimeoutS: number;
  readonly timeoutHandledExternally: boolean;
  readonly maxInflightTasks: number;
  readonly entrypoint: readonly string[];
  readonly preconditionScript: string | undefined;
  readonly casStore: string;
  readonly acStore: string | undefined;
  readonly uploadStrategy: UploadStrategy;
  readonly workDirectory: string;
  readonly platformProperties: Readonly<Record<string, WorkerProperty>>;
  readonly additionalEnvironment: Readonly<Record<string, EnvironmentSource>>;
  readonly sandbox: SandboxKind;
  readonly sandboxPaths: readonly string[] | undefined;
  readonly allowNetworkProperty: string | undefined;
  readonly limits: ActionLimits;
}

/** Per-action resource limits with defaults applied; 0 = no limit. */
export interface ActionLimits {
  readonly maxProcesses: number;
  readonly maxMemoryBytes: number;
  readonly maxFileSizeBytes: number;
  readonly maxOutputBytes: number;
}

const GIB = 1024 * 1024 * 1024;
/** Default `limits.max_processes`. */
export const DEFAULT_MAX_PROCESSES = 4096;
/** Default `limits.max_file_size_bytes` (8 GiB). */
export const DEFAULT_MAX_FILE_SIZE_BYTES = 8 * GIB;
/** Default `limits.max_output_bytes` (16 GiB). */
export const DEFAULT_MAX_OUTPUT_BYTES = 16 * GIB;

/** Default `limits.max_memory_bytes`: half of the machine's RAM, or 4 GiB when it cannot be read. */
export function defaultMaxMemoryBytes(): number {
  try {
    const total = Deno.systemMemoryInfo().total;
    if (total > 0) return Math.floor(total / 2);
  } catch {
    // No sys permission or no /proc/meminfo.
  }
  return 4 * GIB;
}

/** Applies the defaults of `limits`. */
export function resolveLimits(limits: ActionLimitsConfig | undefined): ActionLimits {
  return {
    maxProcesses: limits?.max_processes ?? DEFAULT_MAX_PROCESSES,
    maxMemoryBytes: limits?.max_memory_bytes ?? defaultMaxMemoryBytes(),
    maxFileSizeBytes: limits?.max_file_size_bytes ?? DEFAULT_MAX_FILE_SIZE_BYTES,
    maxOutputBytes: limits?.max_output_bytes ?? DEFAULT_MAX_OUTPUT_BYTES,
  };
}

/** Default `max_action_timeout` (NativeLink: 20 minutes). */
export const DEFAULT_MAX_ACTION_TIMEOUT_S = 1200;

/** Applies defaults and checks the fields the worker relies on. */
export function resolveLocalWorkerSpec(spec: LocalWorkerSpec, index = 0): ResolvedWorkerSpec {
  const fail = (msg: string) => new CairnError(Code.InvalidArgument, `Cannot start worker ${index}: ${msg}`);
  const uri = spec.worker_api_endpoint?.uri;
  if (!uri || !/^(grpcs?|https?):\/\/[^/]+\/?$/.test(uri)) {
    throw fail(`worker_api_endpoint.uri must be grpc://host:port, got ${JSON.stringify(uri)}`);
  }
  if (spec.worker_api_endpoint.tls_config && !/^(grpcs|https):/.test(uri)) {
    throw fail(`worker_api_endpoint.tls_config needs a grpcs:// uri, got ${JSON.stringify(uri)}`);
  }
  if (!spec.cas_fast_slow_store) throw fail("cas_fast_slow_store is missing");
  if (!spec.work_directory) throw fail("work_directory is missing");
  const sandbox = spec.sandbox ?? "bwrap";
  if (sandbox !== "bwrap" && sandbox !== "none") {
    throw fail(`sandbox must be "bwrap" or "none", got ${sandbox}`);
  }
  const entrypoint = (spec.entrypoint ?? "").trim();
  return {
    name: spec.name ?? String(index),
    endpoint: uri,
    endpointTimeoutS: spec.worker_api_endpoint.timeout ?? 5,
    workerToken: spec.worker_api_endpoint.worker_token || undefined,
    endpointTls: spec.worker_api_endpoint.tls_config,
    maxActionTimeoutS: spec.max_action_timeout_s || DEFAULT_MAX_ACTION_TIMEOUT_S,
    timeoutHandledExternally: spec.timeout_handled_externally ?? false,
    maxInflightTasks: spec.max_inflight_tasks || navigator.hardwareConcurrency || 1,
    entrypoint: entrypoint ? entrypoint.split(/\s+/) : [],
    preconditionScript: spec.experimental_precondition_script || undefined,
    casStore: spec.cas_fast_slow_store,
    acStore: spec.upload_action_result?.ac_store || undefined,
    uploadStrategy: spec.upload_action_result?.upload_ac_results_strategy ?? "success_only",
    workDirectory: spec.work_directory.replace(/\/+$/, "") || "/",
    platformProperties: spec.platform_properties ?? {},
    additionalEnvironment: spec.additional_environment ?? {},
    sandbox,
    sandboxPaths: spec.sandbox_paths,
    allowNetworkProperty: spec.allow_network_property || undefined,
    limits: resolveLimits(spec.limits),
  };
}
