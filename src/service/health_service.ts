/**
 * The gRPC health service (`grpc.health.v1.Health`): `Check`, `List` and `Watch`.
 *
 * The overall server (`""`) and every served service name are SERVING until {@linkcode HealthServiceImpl.setStatus}
 * says otherwise (e.g. NOT_SERVING while shutting down). `Check` of an unknown service is NOT_FOUND; `Watch`
 * streams the current status and every change until the client cancels.
 *
 * @example
 * ```ts
 * import { createHealthService } from "./health_service.ts";
 * import { HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
 * const health = createHealthService({ services: ["build.bazel.remote.execution.v2.ContentAddressableStorage"] });
 * health.setStatus("", HealthCheckResponse_ServingStatus.NOT_SERVING); // draining
 * ```
 * @module
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";

/** Options of {@linkcode createHealthService}. */
export interface HealthServiceOptions {
  /** Fully-qualified names of the served services (all start SERVING). */
  readonly services: readonly string[];
}

/** The Health implementation plus a status switch. */
export type HealthServiceImpl = Partial<ServiceImpl<typeof Health>> & {
  /** Sets a service's status (`""` is the whole server); watchers are told. */
  setStatus(service: string, status: HealthCheckResponse_ServingStatus): void;
};

/** Builds the Health implementation. */
export function createHealthService(options: HealthServiceOptions): HealthServiceImpl {
  const statuses = new Map<string, HealthCheckResponse_ServingStatus>([[
    "",
    HealthCheckResponse_ServingStatus.SERVING,
  ]]);
  for (const s of options.services) statuses.set(s, HealthCheckResponse_ServingStatus.SERVING);
  const watchers = new Set<() => void>();

  return {
    setStatus(service, status) {
      statuses.set(service, status);
      for (const wake of [...watchers]) wake();
    },

    check(req) {
      const status = statuses.get(req.service);
      if (status === undefined) {
        throw new CairnError(Code.NotFound, `Unknown service ${quoteClient(req.service)}`);
      }
      return { status };
    },

    list() {
      return {
        statuses: Object.fromEntries([...statuses].map(([name, status]) => [name, { status }])),
      };
    },

    async *watch(req, ctx) {
      let last: HealthCheckResponse_ServingStatus | undefined;
      let wake: (() => void) | undefined;
      const notify = () => wake?.();
      watchers.add(notify);
      ctx.signal.addEventListener("abort", notify);
      try {
        while (!ctx.signal.aborted) {
          const status = statuses.get(req.service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield { status };
            continue; // the status may have changed while the message was being delivered
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        watchers.delete(notify);
        ctx.signal.removeEventListener("abort", notify);
      }
    },
  };
}
