/**
 * The `simple` scheduler: an in-memory queue of actions matched to connected workers.
 *
 * - Queue order: priority (higher first, as NativeLink), then age.
 * - Identical in-flight actions (same instance, digest function and action digest, not do_not_cache) are
 *   merged: they run once and every caller's operation gets the result. Each caller keeps its own operation
 *   name; cancelling one kills the action only when no other caller awaits it.
 * - Matching follows `supported_platform_properties` (see {@linkcode PropertyMatcher}); among capable workers
 *   `allocation_strategy` picks the least (default) or most recently used.
 * - An action whose properties are unknown fails at once (INVALID_ARGUMENT). One no connected worker could
 *   ever run fails with FAILED_PRECONDITION naming the unmatched properties: at once when workers are
 *   connected, else after `no_matching_worker_grace_s` (e.g. while the first worker is still starting).
 * - Infrastructure failures (worker error, disconnect, keep-alive timeout, no progress within
 *   `max_action_executing_timeout_s`) requeue the action; after more than `max_job_retries` failures it
 *   completes with the last error.
 * - The scheduler never writes the action cache: workers upload results themselves
 *   (`StartExecution.upload_to_action_cache`), as NativeLink workers do.
 *
 * @example
 * ```ts ignore
 * import { SimpleScheduler } from "./simple_scheduler.ts";
 * import { FakeWorker } from "./fake_worker.ts";
 * import { actionRequest } from "./test_actions.ts";
 * const scheduler = new SimpleScheduler({ supported_platform_properties: { cpu_count: "minimum" } });
 * // FakeWorker calls scheduler.registerWorker({ properties, maxInflightTasks, connection }) as a real one does.
 * const worker = new FakeWorker(scheduler, { properties: [{ name: "cpu_count", value: "4" }] });
 * const request = actionRequest("a", { platform: [{ name: "cpu_count", value: "2" }] });
 * const handle = await scheduler.addAction(request);
 * worker.complete((await worker.nextTask()).operationId, 0);
 * for await (const state of handle) console.log(state.stage); // 4 (COMPLETED: it finished before we looked)
 * await scheduler.close();
 * ```
 * @module
 */
import {
  type ExecutedActionMetadata,
  type ExecuteResponse,
  ExecutionStage_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { formatDigest } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { errorResponse } from "./error_response.ts";
import { newOperationName } from "./operation_name.ts";
import { OperationWatch } from "./operation_watch.ts";
import { ActionTrace } from "./action_trace.ts";
import { type Offer, PropertyMatcher, type Requirement } from "./property_matcher.ts";
import type { SimpleSpec } from "./scheduler_spec.ts";
import {
  checkMaxInflight,
  digestText,
  mergeKey,
  pushBounded,
  resolveSimpleSettings,
  unmatchedError,
} from "./simple_settings.ts";
import type {
  ActionHandle,
  ActionRequest,
  ActionScheduler,
  OperationState,
  SchedulerSnapshot,
  WorkerConnection,
  WorkerOutcome,
  WorkerRegistration,
  WorkerScheduler,
  WorkerSession,
  WorkerTask,
} from "./types.ts";

interface ClientOp {
  readonly name: string;
  action: AwaitedAction | undefined;
  readonly watch: OperationWatch;
  completedAt: number | undefined;
}

interface AwaitedAction {
  readonly id: string;
  readonly key: string | undefined;
  readonly request: ActionRequest;
  readonly reqs: readonly Requirement[];
  readonly seq: number;
  readonly queuedAt: number;
  priority: number;
  stage: ExecutionStage_Value;
  done: boolean;
  attempts: number;
  worker: WorkerState | undefined;
  lastProgressAt: number;
  lastClientActivity: number;
  unmatchedSince: number | undefined;
  metadata: ExecutedActionMetadata | undefined;
  readonly clients: Set<ClientOp>;
  /** Its spans when tracing is on (action_trace.ts). */
  readonly trace: ActionTrace | undefined;
}

interface RunningTask {
  readonly action: AwaitedAction;
  killedAt: number | undefined;
}

interface WorkerState {
  readonly id: string;
  readonly offer: Offer;
  readonly maxInflight: number;
  readonly connection: WorkerConnection;
  readonly running: Map<string, RunningTask>;
  lastSeen: number;
  lastUsed: number;
  draining: boolean;
  removed: boolean;
}

/** The `simple` scheduler: both the client side and the worker side. */
export class SimpleScheduler implements ActionScheduler, WorkerScheduler {
  readonly #matcher: PropertyMatcher;
  readonly #mru: boolean;
  readonly #retainMs: number;
  readonly #clientTimeoutMs: number;
  readonly #workerTimeoutMs: number;
  readonly #executingTimeoutMs: number;
  readonly #killAckTimeoutMs: number;
  readonly #maxRetries: number;
  readonly #graceMs: number;

  readonly #clientOps = new Map<string, ClientOp>();
  readonly #inflight = new Map<string, AwaitedAction>();
  readonly #active = new Set<AwaitedAction>();
  readonly #queue: AwaitedAction[] = [];
  readonly #workers = new Map<string, WorkerState>();
  readonly #retained: ClientOp[] = [];
  #seq = 0;
  #useSeq = 0;
  /** The last finished actions and failures, for the status page (newest last). */
  readonly #finishedLog: Mutable<SchedulerSnapshot["finished"][number]>[] = [];
  readonly #failureLog: SchedulerSnapshot["failures"][number][] = [];
  #executionFailures = 0;
  #matchScheduled = false;
  readonly #timer: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(spec: SimpleSpec = {}) {
    this.#matcher = new PropertyMatcher(spec.supported_platform_properties ?? {});
    const settings = resolveSimpleSettings(spec);
    this.#mru = settings.mru;
    this.#retainMs = settings.retainMs;
    this.#clientTimeoutMs = settings.clientTimeoutMs;
    this.#workerTimeoutMs = settings.workerTimeoutMs;
    this.#executingTimeoutMs = settings.executingTimeoutMs;
    this.#killAckTimeoutMs = settings.killAckTimeoutMs;
    this.#maxRetries = settings.maxRetries;
    this.#graceMs = settings.graceMs;
    const periods = [
      this.#retainMs,
      this.#clientTimeoutMs,
      this.#workerTimeoutMs,
      this.#killAckTimeoutMs,
      this.#graceMs,
      ...(this.#executingTimeoutMs > 0 ? [this.#executingTimeoutMs] : []),
    ];
    const sweepMs = Math.max(20, Math.min(1000, Math.min(...periods) / 4));
    this.#timer = setInterval(() => this.#sweep(Date.now()), sweepMs);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Client side

  /** Counts for metrics: actions waiting for a worker, actions on a worker, connected workers. */
  stats(): { queued: number; executing: number; workers: number } {
    let executing = 0;
    for (const a of this.#active) if (a.worker !== undefined) executing++;
    return { queued: this.#queue.length, executing, workers: this.#workers.size };
  }

  /** Workers, unfinished actions and the last finished ones and failures. */
  snapshot(): SchedulerSnapshot {
    const workers = [...this.#workers.values()].map((w) => ({
      id: w.id,
      properties: Object.fromEntries<string[]>([
        ...[...w.offer.totals].map(([k, n]): [string, string[]] => [k, [String(n)]]),
        ...[...w.offer.values].map(([k, v]): [string, string[]] => [k, [...v]]),
      ]),
      running: w.running.size,
      maxInflight: w.maxInflight,
      lastSeen: w.lastSeen,
    }));
    const actions = [...this.#active].map((a) => ({
      id: a.id,
      digest: digestText(a.request.actionDigest),
      stage: a.worker !== undefined ? "executing" as const : "queued" as const,
      queuedAt: a.queuedAt,
      worker: a.worker?.id,
      attempts: a.attempts,
    }));
    return {
      workers,
      actions,
      finished: [...this.#finishedLog],
      failures: [...this.#failureLog],
      executionFailures: this.#executionFailures,
    };
  }

  addAction(request: ActionRequest): Promise<ActionHandle> {
    try {
      return Promise.resolve(this.#addAction(request));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #addAction(request: ActionRequest): ActionHandle {
    if (this.#closed) throw new CairnError(Code.Unavailable, "Scheduler is shutting down");
    const reqs = this.#matcher.parseRequirements(request.platform);
    const now = Date.now();
    const name = request.operationName ?? newOperationName(request.instanceName);
    if (this.#clientOps.has(name)) {
      throw new CairnError(Code.AlreadyExists, `Operation "${name}" already exists`);
    }
    const key = request.doNotCache ? undefined : mergeKey(request);
    let action = key === undefined ? undefined : this.#inflight.get(key);
    if (action !== undefined) {
      if (request.priority > action.priority) {
        action.priority = request.priority;
        if (action.stage === ExecutionStage_Value.QUEUED) {
          this.#dequeue(action);
          this.#enqueue(action);
        }
      }
    } else {
      const offers = this.#offers();
      if (offers.length > 0 && !offers.some((o) => this.#matcher.satisfies(reqs, o, "total"))) {
        throw this.#unmatchedError(request, reqs, offers);
      }
      action = {
        id: name,
        key,
        request,
        reqs,
        seq: ++this.#seq,
        queuedAt: now,
        priority: request.priority,
        stage: ExecutionStage_Value.QUEUED,
        done: false,
        attempts: 0,
        worker: undefined,
        lastProgressAt: now,
        lastClientActivity: now,
        unmatchedSince: offers.length === 0 ? now : undefined,
        metadata: undefined,
        clients: new Set(),
        trace: ActionTrace.start(request.actionDigest, request.instanceName),
      };
      if (key !== undefined) this.#inflight.set(key, action);
      this.#active.add(action);
      this.#enqueue(action);
    }
    const owner = action;
    const client: ClientOp = {
      name,
      action,
      watch: new OperationWatch(stateOf(name, action), () => {
        if (client.action !== undefined) client.action.lastClientActivity = Date.now();
      }),
      completedAt: undefined,
    };
    owner.clients.add(client);
    this.#clientOps.set(name, client);
    this.#scheduleMatch();
    return client.watch.subscribe();
  }

  findOperation(name: string): Promise<OperationState | undefined> {
    const client = this.#clientOps.get(name);
    if (client?.action !== undefined) client.action.lastClientActivity = Date.now();
    return Promise.resolve(client?.watch.state);
  }

  waitOperation(name: string): Promise<ActionHandle | undefined> {
    return Promise.resolve(this.#clientOps.get(name)?.watch.subscribe());
  }

  cancelOperation(name: string): Promise<boolean> {
    const client = this.#clientOps.get(name);
    const action = client?.action;
    if (client === undefined || action === undefined) return Promise.resolve(false);
    action.clients.delete(client);
    this.#completeClient(
      client,
      errorResponse(new CairnError(Code.Cancelled, `Operation "${name}" was cancelled`)),
    );
    if (action.clients.size === 0) this.#abandon(action, undefined, "cancelled by its client");
    return Promise.resolve(true);
  }

  listOperations(): Promise<OperationState[]> {
    return Promise.resolve([...this.#clientOps.values()].map((c) => c.watch.state));
  }

  deleteOperation(name: string): Promise<boolean> {
    const client = this.#clientOps.get(name);
    if (client === undefined) return Promise.resolve(false);
    this.#clientOps.delete(name);
    // Not a cancellation (google.longrunning): the action keeps running until its clients time out.
    client.action?.clients.delete(client);
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#timer);
    const err = new CairnError(Code.Unavailable, "Scheduler is shutting down");
    for (const action of [...this.#active]) {
      this.#abandon(action, errorResponse(err), "scheduler is shutting down");
    }
    for (const worker of [...this.#workers.values()]) {
      worker.connection.disconnect("scheduler is shutting down");
      this.#removeWorker(worker, "scheduler is shutting down");
    }
    return Promise.resolve();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Worker side

  registerWorker(registration: WorkerRegistration): WorkerSession {
    if (this.#closed) throw new CairnError(Code.Unavailable, "Scheduler is shutting down");
    const offer = this.#matcher.parseOffer(registration.properties);
    const max = registration.maxInflightTasks;
    checkMaxInflight(max);
    const id = registration.workerId || `worker-${crypto.randomUUID()}`;
    const old = this.#workers.get(id);
    if (old !== undefined) {
      old.connection.disconnect(`worker "${id}" registered again`);
      this.#removeWorker(old, "registered again");
    }
    const now = Date.now();
    const worker: WorkerState = {
      id,
      offer,
      maxInflight: max,
      connection: registration.connection,
      running: new Map(),
      lastSeen: now,
      lastUsed: ++this.#useSeq,
      draining: false,
      removed: false,
    };
    this.#workers.set(id, worker);
    this.#scheduleMatch();
    return {
      workerId: id,
      keepAlive: () => {
        worker.lastSeen = Date.now();
      },
      progress: (operationId, metadata) => this.#progress(worker, operationId, metadata),
      result: (operationId, outcome) => this.#result(worker, operationId, outcome),
      goingAway: () => {
        worker.draining = true;
      },
      disconnected: (reason) => this.#removeWorker(worker, `disconnected: ${reason}`),
    };
  }

  #progress(worker: WorkerState, operationId: string, metadata: ExecutedActionMetadata | undefined): void {
    const now = Date.now();
    worker.lastSeen = now;
    const task = worker.running.get(operationId);
    if (task === undefined || task.killedAt !== undefined) return;
    task.action.lastProgressAt = now;
    if (metadata !== undefined) {
      task.action.metadata = metadata;
      this.#publish(task.action);
    }
  }

  #result(worker: WorkerState, operationId: string, outcome: WorkerOutcome): void {
    worker.lastSeen = Date.now();
    const task = worker.running.get(operationId);
    if (worker.removed || task === undefined) {
      throw new CairnError(
        Code.FailedPrecondition,
        `Worker "${worker.id}" reported a result for operation "${operationId}" it is not running`,
      );
    }
    worker.running.delete(operationId);
    this.#matcher.adjust(task.action.reqs, worker.offer, 1);
    const action = task.action;
    if (task.killedAt === undefined && action.worker === worker && !action.done) {
      if ("response" in outcome) {
        const status = outcome.response.status;
        const error = status !== undefined && status.code !== 0
          ? status.message || `code ${status.code}`
          : undefined;
        if (error !== undefined) this.#recordFailure(action, worker.id, error);
        pushBounded(this.#finishedLog, {
          digest: digestText(action.request.actionDigest),
          worker: worker.id,
          exitCode: outcome.response.result?.exitCode,
          error,
          queuedAt: action.queuedAt,
          endedAt: Date.now(),
        });
        this.#completeAction(action, outcome.response);
      } else {
        this.#recordFailure(action, worker.id, outcome.error.message);
        this.#failAttempt(action, outcome.error, outcome.error.code !== Code.ResourceExhausted);
      }
    }
    this.#scheduleMatch();
  }

  #recordFailure(action: AwaitedAction, worker: string | undefined, error: string): void {
    this.#executionFailures++;
    pushBounded(this.#failureLog, {
      at: Date.now(),
      digest: digestText(action.request.actionDigest),
      worker,
      error: error.length > 500 ? `${error.slice(0, 500)}…` : error,
    });
  }

  #removeWorker(worker: WorkerState, reason: string): void {
    if (worker.removed) return;
    worker.removed = true;
    if (this.#workers.get(worker.id) === worker) this.#workers.delete(worker.id);
    const tasks = [...worker.running.values()];
    worker.running.clear();
    for (const task of tasks) {
      if (task.killedAt === undefined && task.action.worker === worker && !task.action.done) {
        this.#failAttempt(
          task.action,
          new CairnError(Code.Unavailable, `Worker "${worker.id}" ${reason}`),
          true,
        );
      }
    }
    this.#scheduleMatch();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Queue and matching

  #enqueue(action: AwaitedAction): void {
    const q = this.#queue;
    let lo = 0;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const other = q[mid]!;
      const before = other.priority > action.priority ||
        (other.priority === action.priority && other.seq < action.seq);
      if (before) lo = mid + 1;
      else hi = mid;
    }
    q.splice(lo, 0, action);
  }

  #dequeue(action: AwaitedAction): void {
    const i = this.#queue.indexOf(action);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  #scheduleMatch(): void {
    if (this.#matchScheduled || this.#closed) return;
    this.#matchScheduled = true;
    queueMicrotask(() => {
      this.#matchScheduled = false;
      this.#match();
    });
  }

  #canAccept(w: WorkerState): boolean {
    return !w.removed && !w.draining && (w.maxInflight === 0 || w.running.size < w.maxInflight);
  }

  #match(): void {
    const q = this.#queue;
    let i = 0;
    while (i < q.length) {
      let anyFree = false;
      for (const w of this.#workers.values()) {
        if (this.#canAccept(w)) {
          anyFree = true;
          break;
        }
      }
      if (!anyFree) return;
      const action = q[i]!;
      const worker = this.#pick(action);
      if (worker === undefined) {
        i++;
        continue;
      }
      q.splice(i, 1);
      this.#assign(action, worker);
    }
  }

  #pick(action: AwaitedAction): WorkerState | undefined {
    let best: WorkerState | undefined;
    for (const w of this.#workers.values()) {
      if (!this.#canAccept(w) || !this.#matcher.satisfies(action.reqs, w.offer, "available")) continue;
      if (best === undefined || (this.#mru ? w.lastUsed > best.lastUsed : w.lastUsed < best.lastUsed)) {
        best = w;
      }
    }
    return best;
  }

  #assign(action: AwaitedAction, worker: WorkerState): void {
    const now = Date.now();
    action.stage = ExecutionStage_Value.EXECUTING;
    action.worker = worker;
    action.lastProgressAt = now;
    action.unmatchedSince = undefined;
    worker.running.set(action.id, { action, killedAt: undefined });
    this.#matcher.adjust(action.reqs, worker.offer, -1);
    worker.lastUsed = ++this.#useSeq;
    this.#publish(action);
    const r = action.request;
    const task: WorkerTask = {
      operationId: action.id,
      instanceName: r.instanceName,
      digestFunction: r.digestFunction,
      actionDigest: r.actionDigest,
      action: r.action,
      skipCacheLookup: r.skipCacheLookup,
      queuedAt: action.queuedAt,
      platform: r.platform,
      uploadToActionCache: !r.doNotCache,
      traceparent: action.trace?.assigned(worker.id),
    };
    try {
      worker.connection.startExecution(task);
    } catch (err) {
      queueMicrotask(() =>
        this.#removeWorker(worker, `could not be sent work: ${CairnError.from(err).message}`)
      );
    }
  }

  #offers(): Offer[] {
    const out: Offer[] = [];
    for (const w of this.#workers.values()) if (!w.draining) out.push(w.offer);
    return out;
  }

  #unmatchedError(
    request: ActionRequest,
    reqs: readonly Requirement[],
    offers: readonly Offer[],
  ): CairnError {
    return unmatchedError(this.#matcher, request, reqs, offers);
  }

  // ---------------------------------------------------------------------------------------------------------
  // State changes

  #publish(action: AwaitedAction): void {
    for (const client of action.clients) client.watch.set(stateOf(client.name, action));
  }

  #completeClient(client: ClientOp, response: ExecuteResponse): void {
    const prev = client.watch.state;
    client.action = undefined;
    client.completedAt = Date.now();
    client.watch.set({ ...prev, stage: ExecutionStage_Value.COMPLETED, done: true, response });
    this.#retained.push(client);
  }

  #finish(action: AwaitedAction): void {
    action.done = true;
    action.stage = ExecutionStage_Value.COMPLETED;
    action.worker = undefined;
    this.#active.delete(action);
    if (action.key !== undefined && this.#inflight.get(action.key) === action) {
      this.#inflight.delete(action.key);
    }
  }

  #completeAction(action: AwaitedAction, response: ExecuteResponse): void {
    action.trace?.finished(response.status?.code ?? 0, response.status?.message);
    this.#finish(action);
    const clients = [...action.clients];
    action.clients.clear();
    for (const c of clients) this.#completeClient(c, response);
  }

  #failAttempt(action: AwaitedAction, err: CairnError, counted: boolean): void {
    action.worker = undefined;
    if (counted) action.attempts++;
    if (action.attempts > this.#maxRetries) {
      this.#completeAction(
        action,
        errorResponse(
          new CairnError(
            err.code,
            `Action ${formatDigest(action.request.actionDigest)} failed ${action.attempts} times ` +
              `(max_job_retries ${this.#maxRetries}); last error: ${err.message}`,
          ),
        ),
      );
      return;
    }
    action.stage = ExecutionStage_Value.QUEUED;
    action.trace?.requeued(err);
    this.#enqueue(action);
    this.#publish(action);
    this.#scheduleMatch();
  }

  /** Drops an action: out of the queue, killed on its worker, its remaining clients completed with `response`. */
  #abandon(action: AwaitedAction, response: ExecuteResponse | undefined, reason: string): void {
    if (action.done) return;
    if (action.stage === ExecutionStage_Value.QUEUED) this.#dequeue(action);
    const worker = action.worker;
    if (worker !== undefined) this.#kill(worker, action, reason);
    action.trace?.finished(response?.status?.code || Code.Cancelled, response?.status?.message || reason);
    this.#finish(action);
    const clients = [...action.clients];
    action.clients.clear();
    if (response !== undefined) { for (const c of clients) this.#completeClient(c, response); }
  }

  #kill(worker: WorkerState, action: AwaitedAction, reason: string): void {
    const task = worker.running.get(action.id);
    if (task === undefined || task.killedAt !== undefined) return;
    task.killedAt = Date.now();
    try {
      worker.connection.killExecution(action.id, reason);
    } catch {
      // The stream is gone; its disconnect releases the slot.
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Timers

  #sweep(now: number): void {
    for (const w of [...this.#workers.values()]) {
      let reason: string | undefined;
      if (now - w.lastSeen > this.#workerTimeoutMs) {
        reason = `sent no keep-alive for ${this.#workerTimeoutMs / 1000}s`;
      } else {
        for (const t of w.running.values()) {
          if (t.killedAt !== undefined && now - t.killedAt > this.#killAckTimeoutMs) {
            reason = `did not acknowledge a kill within ${this.#killAckTimeoutMs / 1000}s`;
            break;
          }
        }
      }
      if (reason !== undefined) {
        w.connection.disconnect(`worker ${reason}`);
        this.#removeWorker(w, reason);
      }
    }

    let offers: Offer[] | undefined;
    for (const a of [...this.#active]) {
      if (a.done) continue;
      let listening = false;
      for (const c of a.clients) {
        if (c.watch.open > 0) {
          listening = true;
          break;
        }
      }
      if (!listening && now - a.lastClientActivity > this.#clientTimeoutMs) {
        const err = new CairnError(
          Code.DeadlineExceeded,
          `Operation dropped: no client listened to it for ${this.#clientTimeoutMs / 1000}s`,
        );
        this.#abandon(a, errorResponse(err), "no client is waiting for it any more");
        continue;
      }
      if (
        a.stage === ExecutionStage_Value.EXECUTING && a.worker !== undefined &&
        this.#executingTimeoutMs > 0 &&
        now - a.lastProgressAt > this.#executingTimeoutMs
      ) {
        const worker = a.worker;
        const msg =
          `Action ${formatDigest(a.request.actionDigest)} made no progress on worker "${worker.id}" ` +
          `for ${this.#executingTimeoutMs / 1000}s`;
        this.#kill(worker, a, msg);
        this.#failAttempt(a, new CairnError(Code.DeadlineExceeded, msg), true);
        continue;
      }
      if (a.stage === ExecutionStage_Value.QUEUED) {
        offers ??= this.#offers();
        if (offers.some((o) => this.#matcher.satisfies(a.reqs, o, "total"))) {
          a.unmatchedSince = undefined;
        } else {
          a.unmatchedSince ??= now;
          if (now - a.unmatchedSince >= this.#graceMs) {
            this.#abandon(
              a,
              errorResponse(this.#unmatchedError(a.request, a.reqs, offers)),
              "no worker matches",
            );
          }
        }
      }
    }

    while (this.#retained.length > 0) {
      const c = this.#retained[0]!;
      if (c.completedAt !== undefined && now - c.completedAt < this.#retainMs) break;
      this.#retained.shift();
      if (this.#clientOps.get(c.name) === c) this.#clientOps.delete(c.name);
    }
    this.#scheduleMatch();
  }
}

function stateOf(name: string, action: AwaitedAction): OperationState {
  const r = action.request;
  const base = {
    name,
    instanceName: r.instanceName,
    digestFunction: r.digestFunction,
    actionDigest: r.actionDigest,
    stage: action.stage,
    done: false,
  };
  return action.metadata === undefined ? base : { ...base, partialExecutionMetadata: action.metadata };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
