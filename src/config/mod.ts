/**
 * The config module: reads NativeLink-format JSON5 configs (both the current array forms and the older map
 * forms), validates them against a declarative schema and hands out one canonical {@linkcode CairnConfig}.
 *
 * - Stores / schedulers: `config.stores` / `config.schedulers` are arrays of `{ name, <kind>: {...} }`;
 *   {@linkcode findStore} / {@linkcode storeSpecsByName} give a spec by name, {@linkcode specKind} its kind.
 * - Servers: `config.servers[i].listener.http` and `config.servers[i].services.<service>` — per-instance services
 *   are arrays of `{ instance_name, ... }`; a service key that is present (even `[]`) is enabled.
 * - Workers: `config.workers[i].local`.
 * - One schema (`nativelink_schema.ts`) validates, gives the types (`types.ts`), and drives the one walker
 *   (`walk_config.ts`: {@linkcode storeRefsIn}, {@linkcode walkConfig}).
 * - Sizes are bytes, durations seconds (`*_ms`: milliseconds), `${VAR:-default}` already expanded.
 *
 * @example
 * ```ts
 * import { describeConfig, findStore, loadConfig } from "./mod.ts";
 * const config = await loadConfig("config/local.json5");
 * const cas = findStore(config, "CAS_MAIN_STORE");
 * console.log(describeConfig(config));
 * ```
 * @module
 */
export {
  configBaseDir,
  type ConfigOptions,
  configPathFields,
  configSource,
  loadConfig,
  parseConfig,
  type PathField,
} from "./load_config.ts";
export { checkConfigPaths } from "./check_paths.ts";
export { ConfigError } from "./config_error.ts";
export { describeConfig } from "./describe_config.ts";
export { findScheduler, findStore, schedulerSpecsByName, storeSpecsByName } from "./find_spec.ts";
export { type KindAndBody, specKind } from "./spec_kind.ts";
export type { EnvSource } from "./env_expand.ts";
export { formatDuration, formatSize, parseDuration, parseSize } from "./units.ts";
export { SCHEDULER_KINDS, SERVICES, STORE_KINDS } from "./nativelink_schema.ts";
export type { Infer } from "./schema.ts";
export {
  type ConfigVisitor,
  schedulerKindsIn,
  schedulerStoreRefs,
  storeKindsIn,
  storeRefsIn,
  walkConfig,
} from "./walk_config.ts";
export type * from "./types.ts";
