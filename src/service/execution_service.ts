/**
 * The REAPI Execution service: `Execute` and `WaitExecution`, streaming `google.longrunning.Operation`s.
 *
 * `Execute` reads the Action from the instance's CAS; answers from the instance's action cache when one is
 * configured (unless `skip_cache_lookup` or `do_not_cache`); otherwise reads the Command, checks the whole
 * input tree (missing blobs → FAILED_PRECONDITION with PreconditionFailure violations; output paths escaping
 * the input root → INVALID_ARGUMENT), and submits the action to the instance's scheduler. Every Operation
 * carries an Any-packed `ExecuteOperationMetadata` (stage, action digest); the last one is `done` with an
 * Any-packed `ExecuteResponse` (scheduler-side failures are in its `status`). Operation names are
 * `{instance}/operations/{uuid}`; `WaitExecution` re-attaches to one by name.
 *
 * @example
 * ```ts
 * import { createExecutionService } from "./execution_service.ts";
 * import { Execution } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
 * import { SimpleScheduler } from "../scheduler/simple_scheduler.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * import type { ServiceBinding } from "../transport/types.ts";
 * const casStore = createMemoryStore();
 * const scheduler = new SimpleScheduler({});
 * const bindings: ServiceBinding[] = [];
 * const impl = createExecutionService({ instances: new Map([["main", { casStore, scheduler }]]) });
 * bindings.push({ service: Execution, impl });
 * await scheduler.close();
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  DigestSchema,
  type ExecuteOperationMetadata,
  ExecuteOperationMetadataSchema,
  type ExecuteRequest,
  ExecuteResponseSchema,
  type Execution,
  ExecutionStage_Value,
  type WaitExecutionRequest,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Operation, OperationSchema } from "../gen/google/longrunning/operations_pb.ts";
import { fromProto } from "../digest/digest.ts";
import { loadCommandAndInputs, readAction } from "../scheduler/load_action.ts";
import { instanceOfOperation, newOperationName } from "../scheduler/operation_name.ts";
import type { ActionHandle, ActionScheduler, OperationState } from "../scheduler/types.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { readActionResult } from "./action_cache_service.ts";
import { checkDigestFunction } from "./digest_function.ts";
import { createInstances } from "./instances.ts";

/** Settings of one execution instance (config `execution` entry). */
export interface ExecutionInstance {
  /** The instance's CAS (Action, Command, input tree). */
  readonly casStore: StoreDriver;
  /** Where actions go (the scheduler named by the entry). */
  readonly scheduler: ActionScheduler;
  /** An action cache to answer from before scheduling (optional; `cache_lookup` schedulers do it too). */
  readonly acStore?: StoreDriver;
}

/** Options of {@linkcode createExecutionService}. */
export interface ExecutionServiceOptions {
  readonly instances: ReadonlyMap<string, ExecutionInstance>;
}

/** The `google.longrunning.Operation` for a scheduler state. */
export function toOperation(state: OperationState): Operation {
  const metadata: ExecuteOperationMetadata = create(ExecuteOperationMetadataSchema, {
    stage: state.stage,
    actionDigest: create(DigestSchema, {
      hash: state.actionDigest.hash,
      sizeBytes: BigInt(state.actionDigest.size),
    }),
    digestFunction: state.digestFunction,
    ...(state.partialExecutionMetadata ? { partialExecutionMetadata: state.partialExecutionMetadata } : {}),
  });
  return create(OperationSchema, {
    name: state.name,
    metadata: anyPack(ExecuteOperationMetadataSchema, metadata),
    done: state.done,
    result: state.done && state.response
      ? { case: "response", value: anyPack(ExecuteResponseSchema, state.response) }
      : { case: undefined },
  });
}

/** Streams a handle's states as Operations until done or the client goes away; closes the handle. */
export async function* streamOperations(
  handle: ActionHandle,
  signal: AbortSignal,
): AsyncGenerator<Operation> {
  const onAbort = () => handle.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal.aborted) return;
    for await (const state of handle) yield toOperation(state);
  } finally {
    signal.removeEventListener("abort", onAbort);
    handle.close();
  }
}

/** The schedulers that may know an operation: its instance's first, then every other one. */
export function schedulersFor(
  instances: ReadonlyMap<string, { readonly scheduler: ActionScheduler }>,
  name: string,
): ActionScheduler[] {
  const out: ActionScheduler[] = [];
  const instance = instanceOfOperation(name);
  const own = instance === undefined ? undefined : instances.get(instance)?.scheduler;
  if (own !== undefined) out.push(own);
  for (const { scheduler } of instances.values()) if (!out.includes(scheduler)) out.push(scheduler);
  return out;
}

/** Builds the Execution service. */
export function createExecutionService(options: ExecutionServiceOptions): ServiceImpl<typeof Execution> {
  const instances = createInstances("Execution", options.instances);

  return {
    async *execute(req: ExecuteRequest, ctx: HandlerContext) {
      const inst = instances.get(req.instanceName);
      checkDigestFunction(req.digestFunction);
      const actionDigest = fromProto(req.actionDigest);
      const action = await readAction(inst.casStore, actionDigest);
      const doNotCache = action.doNotCache;
      if (inst.acStore !== undefined && !req.skipCacheLookup && !doNotCache) {
        const result = await readActionResult(inst.acStore, actionDigest).catch(() => undefined);
        if (result !== undefined) {
          yield toOperation({
            name: newOperationName(req.instanceName),
            instanceName: req.instanceName,
            digestFunction: req.digestFunction,
            actionDigest,
            stage: ExecutionStage_Value.COMPLETED,
            done: true,
            response: create(ExecuteResponseSchema, { result, cachedResult: true }),
          });
          return;
        }
      }
      const loaded = await loadCommandAndInputs(inst.casStore, actionDigest, action);
      const handle = await inst.scheduler.addAction({
        instanceName: req.instanceName,
        digestFunction: req.digestFunction,
        actionDigest,
        action,
        platform: loaded.platform,
        skipCacheLookup: req.skipCacheLookup,
        priority: req.executionPolicy?.priority ?? 0,
        doNotCache,
      });
      yield* streamOperations(handle, ctx.signal);
    },

    async *waitExecution(req: WaitExecutionRequest, ctx: HandlerContext) {
      for (const scheduler of schedulersFor(options.instances, req.name)) {
        const handle = await scheduler.waitOperation(req.name);
        if (handle !== undefined) {
          yield* streamOperations(handle, ctx.signal);
          return;
        }
      }
      throw new CairnError(
        Code.NotFound,
        `Operation ${quoteClient(req.name)} not found (unknown, or completed and expired)`,
      );
    },
  };
}
