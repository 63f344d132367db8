/**
 * Reads the one kind key of a store, scheduler, worker or listener spec.
 *
 * @example
 * ```ts
 * import { specKind } from "./spec_kind.ts";
 * const [kind, body] = specKind({ memory: { eviction_policy: { max_bytes: 1000 } } });
 * // kind === "memory", body === { eviction_policy: { max_bytes: 1000 } }
 * ```
 * @module
 */
import type { SchedulerKinds, SchedulerSpec, StoreKinds, StoreSpec } from "./types.ts";

/** A `[kind, body]` pair of a spec. */
export type KindAndBody<Kinds> = { [K in keyof Kinds]: [K, Kinds[K]] }[keyof Kinds];

/** `[kind, body]` of a spec; a top-level spec's `name` is skipped. */
export function specKind(spec: StoreSpec): KindAndBody<StoreKinds>;
export function specKind(spec: SchedulerSpec): KindAndBody<SchedulerKinds>;
export function specKind(spec: object): [string, unknown];
export function specKind(spec: object): [string, unknown] {
  for (const [key, value] of Object.entries(spec)) {
    if (key !== "name") return [key, value];
  }
  throw new Error(`Cannot read spec kind: no kind key in ${JSON.stringify(spec)}`);
}
