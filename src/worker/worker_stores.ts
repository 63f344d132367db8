/**
 * Which stores a worker process builds. A worker runs in its own process, so it must never open a store
 * directory the server process also opens. The worker builds only the stores its config names
 * (`cas_fast_slow_store`, `upload_action_result.ac_store`) and what they name in turn; with a CAS
 * endpoint (`--cas-endpoint grpc://127.0.0.1:PORT`, the parent server's own gRPC listener) every *named*
 * store it reaches — a `ref_store` inside its CAS spec, or a top-level `ac_store` — is served by the parent
 * and replaced by a `grpc` store to that endpoint: `store_type: "ac"` for the `ac_store`, `"cas"`
 * otherwise, with the instance name under which the parent's `cas` / `ac` service exposes that store.
 * Stores written inline in the worker's own spec (typically the fast `filesystem` store under its own
 * `content_path`) are built in the worker process. With `internalToken` (the credential the parent handed
 * this process), those `grpc` stores send it as `authorization: Bearer …`, so they pass the parent's client
 * authentication when its server has an `auth` section.
 *
 * @example
 * ```ts ignore
 * import { workerStoreSpecs } from "./worker_stores.ts";
 * const specs = workerStoreSpecs(config, [config.workers[0].local], "grpc://127.0.0.1:50051");
 * // { WORKER_FAST_SLOW: { fast_slow: { fast: {filesystem…}, slow: { grpc: … } } }, AC_MAIN: { grpc: … } }
 * ```
 * @module
 */
import type { CairnConfig, StoreSpec } from "../config/types.ts";
import { storeRefsIn } from "../config/walk_config.ts";
import { CairnError, Code } from "../util/error.ts";
import type { LocalWorkerSpec } from "./local_worker_spec.ts";

/** The store specs (by name) a worker process needs; see the module doc for `casEndpoint`. */
export function workerStoreSpecs(
  config: CairnConfig,
  workers: readonly LocalWorkerSpec[],
  casEndpoint?: string,
  internalToken?: string,
): Record<string, unknown> {
  const byName = new Map<string, StoreSpec>(
    config.stores.map(({ name, ...spec }) => [name, spec as StoreSpec]),
  );
  const out: Record<string, unknown> = {};
  const instanceFor = (store: string, type: "cas" | "ac"): string => {
    for (const server of config.servers) {
      const hit = type === "cas"
        ? server.services.cas?.find((entry) => entry.cas_store === store)
        : server.services.ac?.find((entry) => entry.ac_store === store);
      if (hit) return hit.instance_name;
    }
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot start worker: store "${store}" is owned by the server but no ${type} service exposes it`,
    );
  };
  const remote = (name: string, type: "cas" | "ac") => ({
    grpc: {
      instance_name: instanceFor(name, type),
      endpoints: [{ address: casEndpoint! }],
      store_type: type,
      ...(internalToken ? { headers: { authorization: `Bearer ${internalToken}` } } : {}),
    },
  });
  const need = (name: string, type: "cas" | "ac", top: boolean) => {
    if (name in out) return;
    const spec = byName.get(name);
    if (!spec) throw new CairnError(Code.InvalidArgument, `Cannot start worker: no store named "${name}"`);
    if (casEndpoint && !top) {
      out[name] = remote(name, type);
      return;
    }
    out[name] = spec;
    for (const ref of storeRefsIn(spec)) need(ref, type, false);
  };
  for (const w of workers) {
    need(w.cas_fast_slow_store, "cas", true);
    const ac = w.upload_action_result?.ac_store;
    if (ac) {
      if (casEndpoint) out[ac] = remote(ac, "ac");
      else need(ac, "ac", true);
    }
  }
  return out;
}
