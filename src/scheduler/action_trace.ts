/**
 * The spans of one action's way through a scheduler, when tracing is on: `scheduler.queued` (from enqueue to
 * assignment) and `scheduler.executing` (from assignment to the worker's result, with `cairn.worker_id`), each
 * again after a retry, children of the span active when the action was added (the Execute RPC). The
 * `traceparent` of the executing span goes to the worker in StartExecution, so the worker's spans join the
 * same trace.
 *
 * @example
 * ```ts
 * import { ActionTrace } from "./action_trace.ts";
 * const trace = ActionTrace.start({ hash: "ab", size: 1 }, "main");  // undefined when tracing is off
 * trace?.assigned("worker-1");
 * trace?.finished(0);
 * ```
 * @module
 */
import type { Digest } from "../digest/digest.ts";
import {
  digestAttribute,
  endSpan,
  NOOP_SPAN,
  startSpan,
  traceparentOf,
  type TraceSpan,
  TRACING,
} from "../util/tracing.ts";
import { CairnError, type Code } from "../util/error.ts";

/** The open spans of one action. */
export class ActionTrace {
  readonly #parent: TraceSpan | undefined;
  readonly #attributes: Record<string, string>;
  #queued: TraceSpan | undefined;
  #executing: TraceSpan | undefined;
  #done = false;

  private constructor(digest: Digest, instanceName: string) {
    this.#attributes = { "cairn.digest": digestAttribute(digest) ?? "", "cairn.instance_name": instanceName };
    // The span active now (the Execute RPC's) parents every span of the action, also those started later
    // from timers and worker messages.
    this.#parent = startSpan("scheduler.action", { attributes: this.#attributes });
    this.#queued = startSpan("scheduler.queued", { attributes: this.#attributes }, this.#parent);
  }

  /** A trace for a newly queued action, or undefined when tracing is off. */
  static start(digest: Digest, instanceName: string): ActionTrace | undefined {
    return TRACING ? new ActionTrace(digest, instanceName) : undefined;
  }

  /** The action went to `workerId`; returns the `traceparent` the worker continues the trace from. */
  assigned(workerId: string): string | undefined {
    endSpan(this.#queued ?? NOOP_SPAN);
    this.#queued = undefined;
    this.#executing = startSpan(
      "scheduler.executing",
      { attributes: { ...this.#attributes, "cairn.worker_id": workerId } },
      this.#parent,
    );
    return traceparentOf(this.#executing);
  }

  /** The attempt failed and the action is queued again. */
  requeued(error: CairnError): void {
    endSpan(this.#executing ?? NOOP_SPAN, error);
    this.#executing = undefined;
    this.#queued ??= startSpan("scheduler.queued", { attributes: this.#attributes }, this.#parent);
  }

  /** The action is done with `code` (0: a result), or dropped with `error`. */
  finished(code: Code | number, message = ""): void {
    if (this.#done) return;
    this.#done = true;
    const error = code === 0 ? undefined : new CairnError(code as Code, message || "action failed");
    if (this.#queued) endSpan(this.#queued, error);
    if (this.#executing) endSpan(this.#executing, error);
    this.#queued = this.#executing = undefined;
    if (this.#parent) endSpan(this.#parent, error);
  }
}
