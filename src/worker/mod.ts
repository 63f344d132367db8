/**
 * Cairn's local worker: runs REAPI actions for the scheduler in a bubblewrap sandbox, with inputs
 * hard-linked from its own filesystem CAS and outputs uploaded once per digest.
 *
 * - {@linkcode createLocalWorker}: one `workers: [{ local: {…} }]` entry (NativeLink's `LocalWorkerConfig`
 *   plus Cairn's `sandbox`, `sandbox_paths`, `allow_network_property`).
 * - {@linkcode createSandbox}: the sandbox alone.
 * - {@linkcode workerProcessCommand} / {@linkcode workerDenoPermissions}: how a parent spawns
 *   `worker_process.ts` with the narrowest Deno permissions; {@linkcode workerStoreSpecs}: which stores that
 *   process builds (server-owned stores reached over `--cas-endpoint`).
 *
 * @example
 * ```ts ignore
 * import { workerProcessCommand } from "./mod.ts";
 * const [program, ...args] = workerProcessCommand(config, "cairn.json5", { casEndpoint: "grpc://127.0.0.1:50051" });
 * const child = new Deno.Command(program, { args }).spawn();
 * ```
 * @module
 */
export {
  createLocalWorker,
  type LocalWorker,
  type LocalWorkerDeps,
  queryPlatformProperties,
} from "./local_worker.ts";
export { type LocalWorkerSpec, resolveLocalWorkerSpec } from "./local_worker_spec.ts";
export { createSandbox, DEFAULT_SANDBOX_PATHS, type Sandbox, type SandboxKind } from "./sandbox.ts";
export {
  PROJECT_DIR,
  workerDenoPermissions,
  workerProcessCommand,
  type WorkerProcessOptions,
} from "./permissions.ts";
export { workerStoreSpecs } from "./worker_stores.ts";
export { parseWorkerArgs, runWorkerProcess } from "./worker_process.ts";
export { consoleWorkerLog, silentWorkerLog, type WorkerLog } from "./worker_log.ts";
