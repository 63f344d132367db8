/**
 * NativeLink's `health: { path }` HTTP endpoint (default `/status`): probes every store with a `hasMany`
 * under a timeout and answers JSON `{ status: "ok" | "error", stores: { name: "ok" | message } }`,
 * 200 when every store answered, 503 otherwise.
 *
 * @example
 * ```ts
 * import { createStatusRoute } from "./status_route.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const casStore = createMemoryStore();
 * const route = createStatusRoute({ stores: [["CAS", casStore]], timeoutSeconds: 5 });
 * const res = await route(new Request("http://x/status")); // 200 {"status":"ok",…}
 * ```
 * @module
 */
import { EMPTY_DIGEST } from "../digest/digest.ts";
import type { StoreDriver } from "../store/types.ts";
import type { HttpRoute } from "../transport/types.ts";

/** Default path of the status route. */
export const DEFAULT_STATUS_PATH = "/status";

/** Options of {@linkcode createStatusRoute}. */
export interface StatusRouteOptions {
  /** Path to answer (config `health.path`; "" → `/status`). */
  readonly path?: string;
  /** The stores to probe, by name. */
  readonly stores: readonly (readonly [string, StoreDriver])[];
  /** Per-probe timeout in seconds (config `health.timeout_seconds`; 0 → 5). */
  readonly timeoutSeconds?: number;
}

async function probe(store: StoreDriver, timeoutMs: number): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      store.hasMany([EMPTY_DIGEST]),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return "ok";
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    clearTimeout(timer);
  }
}

/** Builds the status route. */
export function createStatusRoute(options: StatusRouteOptions): HttpRoute {
  const path = options.path || DEFAULT_STATUS_PATH;
  const timeoutMs = (options.timeoutSeconds || 5) * 1000;
  return async (request) => {
    const url = new URL(request.url);
    if (url.pathname !== path || (request.method !== "GET" && request.method !== "HEAD")) return undefined;
    const results = await Promise.all(
      options.stores.map(async ([name, store]) => [name, await probe(store, timeoutMs)]),
    );
    const ok = results.every(([, r]) => r === "ok");
    const body = JSON.stringify({ status: ok ? "ok" : "error", stores: Object.fromEntries(results) });
    return new Response(request.method === "HEAD" ? null : body, {
      status: ok ? 200 : 503,
      headers: { "content-type": "application/json" },
    });
  };
}
