/**
 * Config specs of the scheduler kinds (NativeLink's `schedulers` entries, without their `name`): a spec is an
 * object with exactly one kind key, e.g. `{ simple: { supported_platform_properties: { cpu_count: "minimum" } } }`.
 * Durations are in seconds.
 *
 * @example
 * ```ts
 * import type { SchedulerSpec } from "./scheduler_spec.ts";
 * const spec: SchedulerSpec = { cache_lookup: { ac_store: "AC", scheduler: { simple: {} } } };
 * ```
 * @module
 */

/** How a platform property is matched (see `property_matcher.ts`). */
export type PropertyType = "minimum" | "exact" | "priority" | "ignore";

/** Which capable worker gets an action. */
export type AllocationStrategy = "least_recently_used" | "most_recently_used";

/** The `simple` scheduler. */
export interface SimpleSpec {
  /** Platform properties the scheduler knows, by name; others are rejected. */
  readonly supported_platform_properties?: Readonly<Record<string, PropertyType>>;
  /** How long completed operations stay queryable (default 60). */
  readonly retain_completed_for_s?: number;
  /** An action nobody listens to is dropped after this (default 60). */
  readonly client_action_timeout_s?: number;
  /** A worker without keep-alive for this long is removed (default 5). */
  readonly worker_timeout_s?: number;
  /** An executing action without progress for this long is retried (default 0: never). */
  readonly max_action_executing_timeout_s?: number;
  /** A worker that does not acknowledge a kill within this is removed (default 60). */
  readonly unacknowledged_kill_timeout_s?: number;
  /** Cairn: how long an action waits for a worker that could run it before it fails (default 5). */
  readonly no_matching_worker_grace_s?: number;
  /** Infrastructure failures tolerated before an action fails (default 3). */
  readonly max_job_retries?: number;
  /** Default `least_recently_used`. */
  readonly allocation_strategy?: AllocationStrategy;
  /**
   * `"memory"` (default), or `{ redis: { redis_store: "NAME" } }`: the queue and operations live in the server of
   * that `redis_store`, shared by every scheduler process configured with it (see redis_scheduler.ts).
   */
  readonly experimental_backend?: "memory" | { readonly redis: { readonly redis_store: string } };
  /** Accepted for NativeLink compatibility (may be negative); ignored. */
  readonly worker_match_logging_interval_s?: number;
  /** Accepted for NativeLink compatibility (may be negative); ignored. */
  readonly fallback_match_interval_s?: number;
}

/** The `cache_lookup` scheduler: answers from `ac_store` before forwarding to `scheduler`. */
export interface CacheLookupSpec {
  /** Name of the action cache store. */
  readonly ac_store: string;
  readonly scheduler: SchedulerSpec;
}

/** One platform property rewrite of a `property_modifier` scheduler. */
export type PropertyModification =
  | { readonly add: { readonly name: string; readonly value: string } }
  | { readonly remove: string }
  | {
    readonly replace: {
      readonly name: string;
      /** Only properties with this value (default: any). */
      readonly value?: string;
      readonly new_name: string;
      /** Default: keep the value. */
      readonly new_value?: string;
    };
  };

/** The `property_modifier` scheduler: rewrites platform properties, then forwards to `scheduler`. */
export interface PropertyModifierSpec {
  readonly modifications: readonly PropertyModification[];
  readonly scheduler: SchedulerSpec;
}

/** The `grpc` scheduler (not yet supported; its fields are not checked here). */
export type GrpcSchedulerSpec = Readonly<Record<string, unknown>>;

/** The `historical_resource` scheduler (not yet supported; its fields are not checked here). */
export type HistoricalResourceSpec = Readonly<Record<string, unknown>>;

/** Every scheduler kind and its body. */
export interface SchedulerSpecKinds {
  readonly simple: SimpleSpec;
  readonly cache_lookup: CacheLookupSpec;
  readonly property_modifier: PropertyModifierSpec;
  readonly grpc: GrpcSchedulerSpec;
  readonly historical_resource: HistoricalResourceSpec;
}

/** The name of a scheduler kind. */
export type SchedulerKind = keyof SchedulerSpecKinds;

/** A scheduler spec: exactly one kind key. */
export type SchedulerSpec = {
  [K in SchedulerKind]: { readonly [P in K]: SchedulerSpecKinds[K] };
}[SchedulerKind];
