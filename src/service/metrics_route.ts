/**
 * NativeLink's `experimental_prometheus: { path }` service: Prometheus text metrics over plain HTTP on the
 * server's listener (default path `/metrics`).
 *
 * @example
 * ```ts
 * const route = createMetricsRoute("/metrics");
 * const res = await route(new Request("http://x/metrics")); // 200 text/plain; version=0.0.4
 * ```
 * @module
 */
import { renderMetrics } from "../util/metrics.ts";
import type { HttpRoute } from "../transport/types.ts";
import type { ServiceExtension } from "./mod.ts";

/** The default scrape path. */
export const DEFAULT_METRICS_PATH = "/metrics";

/** A route answering GET `path` with every registered collector's metrics. */
export function createMetricsRoute(path = DEFAULT_METRICS_PATH): HttpRoute {
  return (request) => {
    if (new URL(request.url).pathname !== path) return undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Use GET\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    return new Response(request.method === "HEAD" ? null : renderMetrics(), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  };
}

/** Serves `experimental_prometheus` wherever a server's config has it. */
export const metricsExtension: ServiceExtension = ({ services }) => {
  const spec = services.experimental_prometheus;
  if (spec === undefined) return undefined;
  return {
    handles: ["experimental_prometheus"],
    routes: [createMetricsRoute(spec.path ?? DEFAULT_METRICS_PATH)],
  };
};
