/**
 * `bindService`: pairs a service descriptor with a typed implementation, checking the impl against the
 * service's own method signatures (a bare `ServiceBinding` literal only sees the loose `ServiceImpl<any>`).
 *
 * @example
 * ```ts
 * import { bindService } from "./bind_service.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const binding = bindService(Health, { check: (req) => ({ status: req.service === "" ? 1 : 3 }) });
 * ```
 * @module
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ServiceBinding } from "./types.ts";

/** A binding of `impl` to `service`, type-checked against the service's methods. */
export function bindService<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
): ServiceBinding {
  return { service, impl: impl as ServiceBinding["impl"] };
}
