/**
 * The worker API (`cairn.worker.v1.WorkerApi.Connect`): one bidi stream per worker.
 *
 * The worker's first message must be Hello (properties, max_inflight_tasks, preferred id); the scheduler
 * registers it and answers Welcome with its id and the keep-alive interval. A Hello with a property the
 * scheduler does not support (or a non-numeric `minimum` value) ends the stream with INVALID_ARGUMENT. Then:
 * worker KeepAlive → liveness; ExecutionUpdate.started → progress; .response / .internal_error → the task's
 * terminal report (a report for a task the worker was not given is logged and ignored); GoingAway → no new
 * work. The scheduler sends StartExecution, KillExecution, KeepAlive and, when it drops the worker,
 * Disconnect before closing the stream. When the stream ends or fails the worker is removed and its tasks
 * requeued. A worker may reconnect (it gets a new id); its Hello's old id and `running_operation_ids` are passed
 * on, so a scheduler with shared state (the Redis backend) can re-adopt the actions it still runs.
 *
 * Workers authenticate: with `authenticate` set (the app always sets it, see `src/auth/worker_auth.ts`), a
 * stream without a valid worker credential ends with UNAUTHENTICATED before any message is read. Worker ids
 * are assigned here: the id a Hello proposes is only a label (`<label>-<random>`), so no client can take over
 * (or disconnect) another worker's registration.
 *
 * @example
 * ```ts
 * import { createWorkerApiService } from "./worker_api_service.ts";
 * import { WorkerApi } from "../gen/cairn/worker/v1/worker_api_pb.ts";
 * import { createSchedulers } from "../scheduler/mod.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * import type { ServiceBinding } from "../transport/types.ts";
 * const schedulers = createSchedulers({ MAIN: { simple: {} } }, { stores: { get: () => createMemoryStore() } });
 * const bindings: ServiceBinding[] = [];
 * const impl = createWorkerApiService({ scheduler: schedulers.get("MAIN")!.workers! });
 * bindings.push({ service: WorkerApi, impl });
 * await schedulers.get("MAIN")!.actions.close();
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { DigestSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  type SchedulerMessage,
  SchedulerMessageSchema,
  type WorkerApi,
  type WorkerMessage,
} from "../gen/cairn/worker/v1/worker_api_pb.ts";
import type { WorkerConnection, WorkerScheduler, WorkerSession, WorkerTask } from "../scheduler/types.ts";
import { CairnError, Code } from "../util/error.ts";

/** Options of {@linkcode createWorkerApiService}. */
export interface WorkerApiServiceOptions {
  /** The worker side of the configured scheduler. */
  readonly scheduler: WorkerScheduler;
  /** Keep-alive interval announced in Welcome and used for the scheduler's own pings (default 1 s). */
  readonly keepaliveIntervalS?: number;
  /** Where protocol problems are reported (default `console.warn`). */
  readonly log?: (message: string) => void;
  /** Checks the worker's credential in the request headers; throws UNAUTHENTICATED to refuse it. */
  readonly authenticate?: (headers: Headers) => void;
}

/** A server-assigned worker id: the Hello's proposed id (sanitized, shortened) as a label plus a random part. */
export function assignWorkerId(proposed: string): string {
  // A reconnecting worker proposes the id it had: keep its label, not the old random part.
  const base = proposed.replace(/-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "");
  const label = base.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64) || "worker";
  return `${label}-${crypto.randomUUID()}`;
}

/** A small unbounded queue read by one async consumer. */
class MessageQueue<T> {
  #items: T[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  push(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *drain(): AsyncGenerator<T> {
    for (;;) {
      if (this.#items.length > 0) {
        const batch = this.#items;
        this.#items = [];
        for (const item of batch) yield item;
        continue;
      }
      if (this.#ended) return;
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await promise;
      this.#wake = undefined;
    }
  }
}

function startMessage(task: WorkerTask): SchedulerMessage {
  return create(SchedulerMessageSchema, {
    msg: {
      case: "startExecution",
      value: {
        operationId: task.operationId,
        instanceName: task.instanceName,
        digestFunction: task.digestFunction,
        action: task.action,
        actionDigest: create(DigestSchema, {
          hash: task.actionDigest.hash,
          sizeBytes: BigInt(task.actionDigest.size),
        }),
        skipCacheLookup: task.skipCacheLookup,
        queuedTimestamp: timestampFromMs(task.queuedAt),
        platformProperties: task.platform.map((p) => ({ name: p.name, value: p.value })),
        uploadToActionCache: task.uploadToActionCache,
        traceparent: task.traceparent ?? "",
      },
    },
  });
}

/** Builds the WorkerApi service. */
export function createWorkerApiService(options: WorkerApiServiceOptions): ServiceImpl<typeof WorkerApi> {
  const scheduler = options.scheduler;
  const intervalS = options.keepaliveIntervalS ?? 1;
  const log = options.log ?? ((m: string) => console.warn(m));

  function handle(session: WorkerSession, message: WorkerMessage): void {
    session.keepAlive();
    const msg = message.msg;
    switch (msg.case) {
      case "keepAlive":
        return;
      case "goingAway":
        session.goingAway();
        return;
      case "hello":
        log(`Worker "${session.workerId}" sent a second Hello; ignored`);
        return;
      case "executionUpdate": {
        const u = msg.value;
        const update = u.update;
        try {
          if (update.case === "started") {
            session.progress(u.operationId, update.value.partialExecutionMetadata);
          } else if (update.case === "response") {
            session.result(u.operationId, { response: update.value });
          } else if (update.case === "internalError") {
            const code = update.value.code in Code ? update.value.code as Code : Code.Internal;
            session.result(u.operationId, {
              error: new CairnError(code, `Worker "${session.workerId}" failed: ${update.value.message}`),
            });
          } else {
            log(`Worker "${session.workerId}" sent an empty ExecutionUpdate for "${u.operationId}"; ignored`);
          }
        } catch (err) {
          log(`Rejected update from worker "${session.workerId}": ${CairnError.from(err).message}`);
        }
        return;
      }
      default:
        log(`Worker "${session.workerId}" sent an empty message; ignored`);
    }
  }

  return {
    async *connect(requests: AsyncIterable<WorkerMessage>, ctx: HandlerContext) {
      options.authenticate?.(ctx.requestHeader);
      const input = requests[Symbol.asyncIterator]();
      const first = await input.next();
      if (first.done || first.value.msg.case !== "hello") {
        throw new CairnError(Code.InvalidArgument, "The first message of WorkerApi.Connect must be Hello");
      }
      const hello = first.value.msg.value;
      const out = new MessageQueue<SchedulerMessage>();
      const connection: WorkerConnection = {
        startExecution: (task) => out.push(startMessage(task)),
        killExecution: (operationId, reason) =>
          out.push(
            create(SchedulerMessageSchema, {
              msg: { case: "killExecution", value: { operationId, reason } },
            }),
          ),
        disconnect: (reason) => {
          out.push(create(SchedulerMessageSchema, { msg: { case: "disconnect", value: { reason } } }));
          out.end();
        },
      };
      let session: WorkerSession;
      try {
        session = scheduler.registerWorker({
          workerId: assignWorkerId(hello.workerId),
          properties: hello.properties.map((p) => ({ name: p.name, value: p.value })),
          maxInflightTasks: hello.maxInflightTasks,
          connection,
          previousWorkerId: hello.workerId,
          runningOperationIds: hello.runningOperationIds,
        });
      } catch (err) {
        const e = CairnError.from(err);
        log(`Refused worker "${hello.workerId || "(no id)"}": ${e.message}`);
        throw e;
      }
      out.push(create(SchedulerMessageSchema, {
        msg: {
          case: "welcome",
          value: {
            workerId: session.workerId,
            keepaliveInterval: {
              seconds: BigInt(Math.floor(intervalS)),
              nanos: Math.round((intervalS % 1) * 1e9),
            },
          },
        },
      }));
      const ping = setInterval(
        () => out.push(create(SchedulerMessageSchema, { msg: { case: "keepAlive", value: {} } })),
        intervalS * 1000,
      );
      // End the session as soon as either direction ends: the response side may be stalled on a slow reader.
      const finish = (reason: string) => {
        out.end();
        session.disconnected(reason);
      };
      const onAbort = () => finish("stream cancelled");
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      const reader = (async () => {
        try {
          for (;;) {
            const r = await input.next();
            if (r.done) break;
            handle(session, r.value);
          }
          finish("worker closed the stream");
        } catch (err) {
          finish(`stream failed: ${CairnError.from(err).message}`);
        }
      })();
      try {
        yield* out.drain();
      } finally {
        clearInterval(ping);
        ctx.signal.removeEventListener("abort", onAbort);
        finish("stream closed");
        void input.return?.()?.catch(() => {});
        void reader;
      }
    },
  };
}
