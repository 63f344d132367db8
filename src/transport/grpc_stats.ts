/**
 * Per-method gRPC counters of the plain gRPC path: calls handled by status code and their latency, shared by
 * every server of the process and exported as `cairn_grpc_server_handled_total` and
 * `cairn_grpc_server_handling_seconds`.
 *
 * @example
 * ```ts
 * const stats = methodStats("/build.bazel.remote.execution.v2.ActionCache/GetActionResult");
 * stats.record(0, 0.0012);
 * ```
 * @module
 */
import { Histogram, labelValue, registerCollector } from "../util/metrics.ts";
import { MetricFamily } from "../util/metric_family.ts";
import { codeName } from "../util/error.ts";

/** Seed 000's latency histogram: every RPC (gRPC, gRPC-Web, Connect) by method. */
const requestDuration = new MetricFamily(
  "histogram",
  "nativelink_request_duration_seconds",
  "Time from request headers to the final status, by method (gRPC, gRPC-Web and Connect).",
  ["method"],
);
/**
 * Seed 000's error counter: calls that ended with an error, by method (from zero for every served method;
 * `cairn_grpc_server_handled_total` has the codes). OK, NOT_FOUND (a cache miss) and CANCELLED (the client
 * went away) are not errors.
 */
const requestErrors = new MetricFamily(
  "counter",
  "nativelink_request_errors_total",
  "RPCs that ended with an error status (not OK, NOT_FOUND or CANCELLED), by method.",
  ["method"],
);
requestDuration.register();
requestErrors.register();

/** Codes that are no error for `nativelink_request_errors_total`: OK, CANCELLED, NOT_FOUND. */
const NOT_ERRORS = new Set([0, 1, 5]);

/** Counters of one method. */
export class MethodStats {
  readonly path: string;
  readonly byCode = new Float64Array(17);
  readonly latency = new Histogram();
  /** This method's series of `nativelink_request_duration_seconds`, made at its first call. */
  #duration: Histogram | undefined;

  constructor(path: string) {
    this.path = path;
    requestErrors.inc([path], 0);
  }

  /** Records one finished call. */
  record(code: number, seconds: number): void {
    const c = code >= 0 && code < 17 ? code : 2;
    this.byCode[c]!++;
    this.latency.observe(seconds);
    (this.#duration ??= requestDuration.histogramOf([this.path])).observe(seconds);
    if (!NOT_ERRORS.has(c)) requestErrors.inc([this.path]);
  }
}

const stats = new Map<string, MethodStats>();

/** Calls finished and calls that ended in an error (as `nativelink_request_errors_total` counts), all methods. */
export function requestTotals(): { calls: number; errors: number } {
  let calls = 0;
  let errors = 0;
  for (const s of stats.values()) {
    s.byCode.forEach((n, code) => {
      calls += n;
      if (!NOT_ERRORS.has(code)) errors += n;
    });
  }
  return { calls, errors };
}

/** The shared counters of a method path (`/pkg.Service/Method`). */
export function methodStats(path: string): MethodStats {
  let s = stats.get(path);
  if (s === undefined) stats.set(path, s = new MethodStats(path));
  return s;
}

registerCollector(() => {
  const handled = [
    "# HELP cairn_grpc_server_handled_total gRPC calls completed, by method and status code.",
    "# TYPE cairn_grpc_server_handled_total counter",
  ];
  const latency = [
    "# HELP cairn_grpc_server_handling_seconds Time from request headers to the final status.",
    "# TYPE cairn_grpc_server_handling_seconds histogram",
  ];
  for (const s of stats.values()) {
    if (s.latency.count === 0) continue;
    const method = `grpc_method="${labelValue(s.path)}"`;
    s.byCode.forEach((n, code) => {
      if (n > 0) {
        handled.push(`cairn_grpc_server_handled_total{${method},grpc_code="${codeName(code)}"} ${n}`);
      }
    });
    latency.push(...s.latency.lines("cairn_grpc_server_handling_seconds", method));
  }
  return [...handled, ...latency];
});
