/**
 * What the two backends of the `simple` scheduler (in memory: `simple_scheduler.ts`; in Redis:
 * `redis_scheduler.ts`) share: the resolved settings with their defaults, the merge key of identical
 * actions, the unmatched-platform error, worker registration checks and the status-page log rows.
 *
 * @example
 * ```ts
 * import { resolveSimpleSettings } from "./simple_settings.ts";
 * const s = resolveSimpleSettings({ worker_timeout_s: 10 });
 * s.workerTimeoutMs; // 10000
 * s.maxRetries; // 3
 * ```
 * @module
 */
import { formatDigest } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import type { Offer, PropertyMatcher, Requirement } from "./property_matcher.ts";
import type { SimpleSpec } from "./scheduler_spec.ts";
import type { ActionRequest } from "./types.ts";

/** Defaults of the `simple` scheduler's settings (seconds, or counts). */
export const SIMPLE_DEFAULTS = {
  retain_completed_for_s: 60,
  client_action_timeout_s: 60,
  worker_timeout_s: 5,
  unacknowledged_kill_timeout_s: 60,
  max_job_retries: 3,
  no_matching_worker_grace_s: 5,
} as const;

/** A `simple` spec with every default applied, durations in milliseconds. */
export interface SimpleSettings {
  /** `allocation_strategy` is `most_recently_used`. */
  readonly mru: boolean;
  readonly retainMs: number;
  readonly clientTimeoutMs: number;
  readonly workerTimeoutMs: number;
  /** 0: never. */
  readonly executingTimeoutMs: number;
  readonly killAckTimeoutMs: number;
  readonly maxRetries: number;
  readonly graceMs: number;
}

function positive(value: number | undefined, fallback: number): number {
  return value === undefined || !(value > 0) ? fallback : value;
}

/** Applies the defaults; INVALID_ARGUMENT for an unknown `allocation_strategy`. */
export function resolveSimpleSettings(spec: SimpleSpec): SimpleSettings {
  const strategy = spec.allocation_strategy ?? "least_recently_used";
  if (strategy !== "least_recently_used" && strategy !== "most_recently_used") {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot create scheduler: allocation_strategy is "${strategy}", expected least_recently_used or most_recently_used`,
    );
  }
  const d = SIMPLE_DEFAULTS;
  return {
    mru: strategy === "most_recently_used",
    retainMs: positive(spec.retain_completed_for_s, d.retain_completed_for_s) * 1000,
    clientTimeoutMs: positive(spec.client_action_timeout_s, d.client_action_timeout_s) * 1000,
    workerTimeoutMs: positive(spec.worker_timeout_s, d.worker_timeout_s) * 1000,
    executingTimeoutMs: positive(spec.max_action_executing_timeout_s, 0) * 1000,
    killAckTimeoutMs: positive(spec.unacknowledged_kill_timeout_s, d.unacknowledged_kill_timeout_s) * 1000,
    maxRetries: positive(spec.max_job_retries, d.max_job_retries),
    graceMs: (spec.no_matching_worker_grace_s ?? d.no_matching_worker_grace_s) * 1000,
  };
}

/** Identical in-flight actions share this key (instance, digest function, action digest). */
export function mergeKey(r: ActionRequest): string {
  return `${r.instanceName}\u0000${r.digestFunction}\u0000${r.actionDigest.hash}-${r.actionDigest.size}`;
}

/** INVALID_ARGUMENT unless `max` (a worker's max_inflight_tasks) is a non-negative integer. */
export function checkMaxInflight(max: number): void {
  if (!Number.isSafeInteger(max) || max < 0) {
    throw new CairnError(
      Code.InvalidArgument,
      `Worker max_inflight_tasks ${max} is not a non-negative integer`,
    );
  }
}

/** FAILED_PRECONDITION: no worker (of `offers`) can run the action, naming the unmatched properties. */
export function unmatchedError(
  matcher: PropertyMatcher,
  request: ActionRequest,
  reqs: readonly Requirement[],
  offers: readonly Offer[],
): CairnError {
  const what = offers.length === 0
    ? "no worker is connected"
    : `no connected worker matches platform properties ${matcher.explainUnmatched(reqs, offers)}`;
  return new CairnError(
    Code.FailedPrecondition,
    `No worker can run action ${formatDigest(request.actionDigest)}: ${what}`,
  );
}

/** How many finished actions and failures a scheduler remembers for the status page. */
export const LOG_ROWS = 50;

/** Appends to a status-page log, dropping the oldest row beyond {@linkcode LOG_ROWS}. */
export function pushBounded<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > LOG_ROWS) list.shift();
}

/** `hash/size`, as the status page shows an action. */
export function digestText(d: { hash: string; size: number }): string {
  return `${d.hash}/${d.size}`;
}
