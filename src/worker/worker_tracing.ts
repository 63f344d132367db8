/**
 * The worker's spans of one action, when tracing is on: `worker.action` (child of the scheduler's span named
 * by StartExecution's `traceparent`) around the whole run, and inside it `worker.fetch_inputs`,
 * `worker.execute` (with `process.exit.code`) and `worker.upload_outputs`, placed exactly at the times the
 * ActionResult's ExecutedActionMetadata reports, so the trace and the REAPI metadata agree.
 *
 * @example
 * ```ts ignore
 * import { traceAction } from "./worker_tracing.ts";
 * const outcome = await traceAction(task, "worker-1", () => runAction(ctx, task, signal));
 * ```
 * @module
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ExecutedActionMetadata } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { StartExecution } from "../gen/cairn/worker/v1/worker_api_pb.ts";
import type { ActionOutcome } from "./run_action.ts";
import { CairnError } from "../util/error.ts";
import {
  type Attributes,
  digestAttribute,
  endSpan,
  remoteParent,
  startSpan,
  type TraceSpan,
  TRACING,
  withSpan,
} from "../util/tracing.ts";

/** Runs `run` (one action) inside its `worker.action` span when tracing is on; just runs it otherwise. */
export async function traceAction(
  task: StartExecution,
  workerId: string,
  run: () => Promise<ActionOutcome>,
): Promise<ActionOutcome> {
  if (!TRACING) return run();
  const attributes: Attributes = {
    "cairn.operation_id": task.operationId,
    "cairn.instance_name": task.instanceName,
    "cairn.digest": digestAttribute(task.actionDigest),
    "cairn.worker_id": workerId,
  };
  const span = startSpan("worker.action", { attributes }, remoteParent(task.traceparent));
  let outcome: ActionOutcome;
  try {
    outcome = await withSpan(span, run);
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
  if ("response" in outcome) {
    const { result, status } = outcome.response;
    const meta = result?.executionMetadata;
    if (meta) phaseSpans(span, meta, attributes, result.exitCode);
    const code = status?.code ?? 0;
    endSpan(span, code === 0 ? undefined : new CairnError(code, status?.message ?? ""));
  } else {
    endSpan(span, new CairnError(outcome.internalError.code, outcome.internalError.message));
  }
  return outcome;
}

function phaseSpans(parent: TraceSpan, meta: ExecutedActionMetadata, attributes: Attributes, exit: number) {
  const phase = (
    name: string,
    from: Timestamp | undefined,
    to: Timestamp | undefined,
    extra?: Attributes,
  ) => {
    if (from === undefined || to === undefined) return;
    const span = startSpan(name, { attributes: { ...attributes, ...extra }, startTime: ms(from) }, parent);
    endSpan(span, undefined, ms(to));
  };
  phase("worker.fetch_inputs", meta.inputFetchStartTimestamp, meta.inputFetchCompletedTimestamp);
  phase("worker.execute", meta.executionStartTimestamp, meta.executionCompletedTimestamp, {
    "process.exit.code": exit,
  });
  phase("worker.upload_outputs", meta.outputUploadStartTimestamp, meta.outputUploadCompletedTimestamp);
}

function ms(t: Timestamp): number {
  return Number(t.seconds) * 1000 + t.nanos / 1e6;
}
