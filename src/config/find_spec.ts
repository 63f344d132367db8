/**
 * Finds top-level stores and schedulers of a validated config by name.
 *
 * @example
 * ```ts
 * import { findStore } from "./find_spec.ts";
 * import { parseConfig } from "./load_config.ts";
 * const config = parseConfig(
 *   `{ stores: [{ name: "CAS_MAIN_STORE", memory: { eviction_policy: { max_bytes: "1gb" } } }], servers: [] }`,
 *   "cas.json5",
 *   {},
 * );
 * const spec = findStore(config, "CAS_MAIN_STORE"); // { memory: {...} } without the name
 * console.log(spec);
 * ```
 * @module
 */
import type { CairnConfig, SchedulerSpec, StoreSpec } from "./types.ts";

/** The spec (without its `name`) of the top-level store `name`, or `undefined`. */
export function findStore(config: CairnConfig, name: string): StoreSpec | undefined {
  const found = config.stores.find((store) => store.name === name);
  if (!found) return undefined;
  const { name: _name, ...spec } = found;
  return spec as StoreSpec;
}

/** The spec (without its `name`) of the top-level scheduler `name`, or `undefined`. */
export function findScheduler(config: CairnConfig, name: string): SchedulerSpec | undefined {
  const found = config.schedulers.find((scheduler) => scheduler.name === name);
  if (!found) return undefined;
  const { name: _name, ...spec } = found;
  return spec as SchedulerSpec;
}

/** Top-level stores as a name → spec map (specs without `name`), in file order. */
export function storeSpecsByName(config: CairnConfig): Map<string, StoreSpec> {
  return new Map(config.stores.map(({ name, ...spec }) => [name, spec as StoreSpec]));
}

/** Top-level schedulers as a name → spec map (specs without `name`), in file order. */
export function schedulerSpecsByName(config: CairnConfig): Map<string, SchedulerSpec> {
  return new Map(config.schedulers.map(({ name, ...spec }) => [name, spec as SchedulerSpec]));
}
