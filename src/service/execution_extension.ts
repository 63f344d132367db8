/**
 * The {@linkcode ServiceExtension} that adds remote execution to a server: `execution` entries become the
 * Execution and google.longrunning.Operations services, `worker_api` becomes the WorkerApi service, all
 * backed by the built schedulers.
 *
 * @example
 * ```ts ignore
 * import { createSchedulers } from "../scheduler/mod.ts";
 * import { createExecutionExtension } from "./execution_extension.ts";
 * const schedulers = createSchedulers(config.schedulers, { stores });
 * const built = buildServiceBindings({ services, stores, schedulers, extensions: [createExecutionExtension(schedulers)] });
 * ```
 * @module
 */
import { Execution } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { WorkerApi } from "../gen/cairn/worker/v1/worker_api_pb.ts";
import { Operations } from "../gen/google/longrunning/operations_pb.ts";
import type { SchedulerSet } from "../scheduler/scheduler_registry.ts";
import type { ServiceBinding } from "../transport/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { createExecutionService, type ExecutionInstance } from "./execution_service.ts";
import type { ServiceExtension, ServiceExtensionResult } from "./mod.ts";
import { createOperationsService } from "./operations_service.ts";
import { createWorkerApiService } from "./worker_api_service.ts";
import { checkWorkerToken, createWorkerAuthenticator, WORKER_TOKEN_ENV } from "../auth/worker_auth.ts";

/** Options of {@linkcode createExecutionExtension}. */
export interface ExecutionExtensionOptions {
  /** Keep-alive interval announced to workers (default 1 s). */
  readonly workerKeepaliveIntervalS?: number;
  /**
   * Worker credentials accepted by every worker API besides its own `worker_token`: the credential this
   * process hands its own worker processes, and `$CAIRN_WORKER_TOKEN`. A worker API with no credential at
   * all is refused (FAILED_PRECONDITION): workers must authenticate.
   */
  readonly workerTokens?: readonly string[];
}

/** Builds execution, operations and worker API bindings from a server's `services` config. */
export function createExecutionExtension(
  schedulers: SchedulerSet,
  options: ExecutionExtensionOptions = {},
): ServiceExtension {
  return (ctx) => {
    const handles: ServiceExtensionResult["handles"][number][] = [];
    const bindings: ServiceBinding[] = [];
    const execution = ctx.services.execution;
    if (execution !== undefined && execution.length > 0) {
      const instances = new Map<string, ExecutionInstance>(execution.map((e) => [e.instance_name, {
        casStore: ctx.stores.get(e.cas_store),
        scheduler: schedulers.get(e.scheduler).actions,
      }]));
      bindings.push({ service: Execution, impl: createExecutionService({ instances }) });
      bindings.push({ service: Operations, impl: createOperationsService({ instances }) });
      handles.push("execution");
    }
    const workerApi = ctx.services.worker_api;
    if (workerApi !== undefined) {
      const workers = schedulers.get(workerApi.scheduler).workers;
      if (workers === undefined) {
        throw new CairnError(
          Code.InvalidArgument,
          `Cannot serve worker_api: scheduler "${workerApi.scheduler}" has no worker side (it must be or wrap a simple scheduler)`,
        );
      }
      const tokens = [
        ...(options.workerTokens ?? []),
        checkWorkerToken(workerApi.worker_token, "services.worker_api.worker_token"),
      ].filter((t): t is string => t !== undefined);
      if (tokens.length === 0) {
        throw new CairnError(
          Code.FailedPrecondition,
          `Cannot serve worker_api: workers could not authenticate. Set services.worker_api.worker_token ` +
            `(e.g. "\${${WORKER_TOKEN_ENV}}") and the same worker_api_endpoint.worker_token on the workers, or ` +
            `${WORKER_TOKEN_ENV} in the environment of the scheduler and of its workers`,
        );
      }
      bindings.push({
        service: WorkerApi,
        impl: createWorkerApiService({
          authenticate: createWorkerAuthenticator(tokens),
          scheduler: workers,
          ...(options.workerKeepaliveIntervalS
            ? { keepaliveIntervalS: options.workerKeepaliveIntervalS }
            : {}),
        }),
      });
      handles.push("worker_api");
    }
    return handles.length > 0 ? { handles, bindings } : undefined;
  };
}
