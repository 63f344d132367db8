/**
 * Schedulers: queue actions, match them to workers, report operation states.
 *
 * @example
 * ```ts
 * import { createSchedulers } from "./mod.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const stores = { get: (_name: string) => createMemoryStore() };
 * const schedulers = createSchedulers({ MAIN: { simple: {} } }, { stores });
 * await schedulers.get("MAIN")!.actions.close();
 * ```
 * @module
 */
export type * from "./types.ts";
export type * from "./scheduler_spec.ts";
export {
  createScheduler,
  createSchedulers,
  type SchedulerContext,
  type SchedulerSet,
  type SchedulerSpecs,
} from "./scheduler_registry.ts";
export { SimpleScheduler } from "./simple_scheduler.ts";
export { CacheLookupScheduler } from "./cache_lookup_scheduler.ts";
export { modifyPlatform, PropertyModifierScheduler } from "./property_modifier_scheduler.ts";
export { PropertyMatcher } from "./property_matcher.ts";
export { instanceOfOperation, newOperationName } from "./operation_name.ts";
export { errorResponse } from "./error_response.ts";
export { readMessage } from "./read_message.ts";
