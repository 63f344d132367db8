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
import { codeName } from "../util/error.ts";

/** Counters of one method. */
export class MethodStats {
  readonly path: string;
  readonly byCode = new Float64Array(17);
  readonly latency = new Histogram();

  constructor(path: string) {
    this.path = path;
  }

  /** Records one finished call. */
  record(code: number, seconds: number): void {
    this.byCode[code >= 0 && code < 17 ? code : 2]!++;
    this.latency.observe(seconds);
  }
}

const stats = new Map<string, MethodStats>();

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
