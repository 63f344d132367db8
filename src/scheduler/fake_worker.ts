/**
 * An in-process worker for tests and benchmarks: registers with a {@linkcode WorkerScheduler}, records the
 * tasks it is given, and answers them on demand (or at once with `autoRespond`).
 *
 * @example
 * ```ts
 * import { FakeWorker } from "./fake_worker.ts";
 * import { SimpleScheduler } from "./simple_scheduler.ts";
 * import { actionRequest } from "./test_actions.ts";
 * const scheduler = new SimpleScheduler({ supported_platform_properties: { cpu_count: "minimum" } });
 * const worker = new FakeWorker(scheduler, { properties: [{ name: "cpu_count", value: "2" }] });
 * const handle = await scheduler.addAction(actionRequest("a"));
 * const task = await worker.nextTask();
 * worker.complete(task.operationId, 0);
 * handle.close();
 * await scheduler.close();
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { CairnError, Code } from "../util/error.ts";
import type {
  PlatformProperty,
  WorkerConnection,
  WorkerScheduler,
  WorkerSession,
  WorkerTask,
} from "./types.ts";

/** Options of {@linkcode FakeWorker}. */
export interface FakeWorkerOptions {
  readonly workerId?: string;
  readonly properties?: readonly PlatformProperty[];
  readonly maxInflightTasks?: number;
  /** Answer every task at once (in a microtask) with this response. */
  readonly autoRespond?: (task: WorkerTask) => ExecuteResponse;
  /** Acknowledge kills with a CANCELLED error (default true). */
  readonly ackKills?: boolean;
}

/** A response with the given exit code. */
export function exitResponse(exitCode: number): ExecuteResponse {
  return create(ExecuteResponseSchema, { result: { exitCode } });
}

/** A scripted worker living in the same process as the scheduler. */
export class FakeWorker implements WorkerConnection {
  readonly session: WorkerSession;
  /** Every task received, in order. */
  readonly tasks: WorkerTask[] = [];
  /** Tasks given and not yet answered. */
  readonly running = new Map<string, WorkerTask>();
  /** Operation ids the scheduler asked to kill. */
  readonly kills: string[] = [];
  /** Set when the scheduler dropped this worker. */
  disconnectReason: string | undefined;
  /** Highest number of concurrently running tasks seen. */
  peakRunning = 0;
  readonly #options: FakeWorkerOptions;
  #taken = 0;
  #wakers: (() => void)[] = [];

  constructor(scheduler: WorkerScheduler, options: FakeWorkerOptions = {}) {
    this.#options = options;
    this.session = scheduler.registerWorker({
      ...(options.workerId === undefined ? {} : { workerId: options.workerId }),
      properties: options.properties ?? [],
      maxInflightTasks: options.maxInflightTasks ?? 1,
      connection: this,
    });
  }

  get id(): string {
    return this.session.workerId;
  }

  startExecution(task: WorkerTask): void {
    this.tasks.push(task);
    this.running.set(task.operationId, task);
    this.peakRunning = Math.max(this.peakRunning, this.running.size);
    const auto = this.#options.autoRespond;
    if (auto !== undefined) {
      queueMicrotask(() => {
        if (this.disconnectReason === undefined && this.running.has(task.operationId)) {
          this.respond(task.operationId, auto(task));
        }
      });
    }
    for (const w of this.#wakers.splice(0)) w();
  }

  killExecution(operationId: string): void {
    this.kills.push(operationId);
    if (this.#options.ackKills === false || !this.running.has(operationId)) return;
    queueMicrotask(() => {
      if (this.disconnectReason !== undefined || !this.running.has(operationId)) return;
      this.fail(operationId, new CairnError(Code.Cancelled, "killed"));
    });
  }

  disconnect(reason: string): void {
    this.disconnectReason = reason;
  }

  /** The next task not yet returned by this method (waits for it). */
  async nextTask(timeoutMs = 30_000): Promise<WorkerTask> {
    const deadline = Date.now() + timeoutMs;
    while (this.#taken >= this.tasks.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Worker ${this.id} got no task within ${timeoutMs} ms`);
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wakers.push(resolve);
      const t = setTimeout(resolve, left);
      await promise;
      clearTimeout(t);
    }
    return this.tasks[this.#taken++]!;
  }

  /** Sends a terminal response. */
  respond(operationId: string, response: ExecuteResponse): void {
    this.running.delete(operationId);
    this.session.result(operationId, { response });
  }

  /** Sends a successful result with an exit code. */
  complete(operationId: string, exitCode = 0): void {
    this.respond(operationId, exitResponse(exitCode));
  }

  /** Reports an infrastructure failure. */
  fail(operationId: string, error: CairnError): void {
    this.running.delete(operationId);
    this.session.result(operationId, { error });
  }
}
