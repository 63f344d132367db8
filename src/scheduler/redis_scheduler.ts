/**
 * The `simple` scheduler with its state in Redis (`experimental_backend: { redis: { redis_store: "NAME" } }`),
 * so several scheduler processes (replicas) share one queue:
 *
 * - Any replica accepts Execute; WaitExecution / GetOperation on any replica follow any operation by name.
 * - Each replica matches queued actions to the workers connected to it; a claim is one Lua script, so an
 *   action goes to exactly one worker. Identical in-flight actions (same instance, digest function and
 *   action digest, not do_not_cache) are merged across replicas.
 * - An executing action holds a lease (`PX` = `worker_timeout_s`) renewed by the replica its worker is
 *   connected to. When that replica dies (or the worker's stream ends), the worker reconnects — to any
 *   replica — and lists its running operations in Hello: each one it still holds is re-adopted under its
 *   new id. An action whose lease expires first is requeued (one attempt counted) by the replica holding
 *   the sweeper lock; if its old worker comes back after another worker took it, the old run is killed and
 *   its result dropped (results are fenced by worker id). So no action is lost and none runs twice at once.
 * - Replicas wake each other through Redis pub/sub; a timer (at most every second) also re-reads the state
 *   it watches, so a lost message only delays a change. No busy loop.
 * - Queue order, `max_job_retries`, `client_action_timeout_s`, `no_matching_worker_grace_s`,
 *   `max_action_executing_timeout_s` and `retain_completed_for_s` behave as in the in-memory scheduler.
 *
 * The in-memory scheduler (`simple_scheduler.ts`) is unchanged; both share the settings and helpers of
 * `simple_settings.ts`, the property matcher, operation watches and error responses. The Redis keys and Lua
 * scripts are in `redis_scheduler_state.ts`.
 *
 * @example
 * ```ts ignore
 * import { RedisScheduler } from "./redis_scheduler.ts";
 * const scheduler = new RedisScheduler({ worker_timeout_s: 5 }, redisStore, "MAIN");
 * const handle = await scheduler.addAction(request); // any replica's worker may run it
 * for await (const state of handle) console.log(state.stage);
 * await scheduler.close();
 * ```
 * @module
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Redis } from "ioredis";
import {
  ActionSchema,
  type ExecutedActionMetadata,
  ExecutedActionMetadataSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
  ExecutionStage_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { RedisStore } from "../store/redis_store.ts";
import { CairnError, Code } from "../util/error.ts";
import { errorResponse } from "./error_response.ts";
import { newOperationName } from "./operation_name.ts";
import { OperationWatch } from "./operation_watch.ts";
import { type Offer, PropertyMatcher, type Requirement } from "./property_matcher.ts";
import { RedisSchedulerState, type StoredAction } from "./redis_scheduler_state.ts";
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
} from "./types.ts";

/** How many queued actions one matching pass looks at. */
const MATCH_WINDOW = 200;

const b64 = {
  decode: (text: string): Uint8Array => Uint8Array.from(atob(text), (c) => c.charCodeAt(0)),
};

function encodeBytes(bytes: Uint8Array): string {
  // Chunked: String.fromCharCode(...bytes) overflows the stack on large messages.
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function encodeResponse(r: ExecuteResponse): string {
  return encodeBytes(toBinary(ExecuteResponseSchema, r));
}

function decodeResponse(text: string): ExecuteResponse {
  return fromBinary(ExecuteResponseSchema, b64.decode(text));
}

/** An action request as stored (JSON; the Action as base64). */
interface StoredRequest {
  i: string;
  f: number;
  d: { hash: string; size: number };
  a: string;
  p: { name: string; value: string }[];
  s: boolean;
  r: number;
  n: boolean;
}

function encodeRequest(r: ActionRequest): string {
  const s: StoredRequest = {
    i: r.instanceName,
    f: r.digestFunction,
    d: { hash: r.actionDigest.hash, size: r.actionDigest.size },
    a: encodeBytes(toBinary(ActionSchema, r.action)),
    p: r.platform.map((p) => ({ name: p.name, value: p.value })),
    s: r.skipCacheLookup,
    r: r.priority,
    n: r.doNotCache,
  };
  return JSON.stringify(s);
}

function decodeRequest(text: string): ActionRequest {
  const s = JSON.parse(text) as StoredRequest;
  return {
    instanceName: s.i,
    digestFunction: s.f,
    actionDigest: s.d,
    action: fromBinary(ActionSchema, b64.decode(s.a)),
    platform: s.p,
    skipCacheLookup: s.s,
    priority: s.r,
    doNotCache: s.n,
  };
}

interface RunningTask {
  readonly id: string;
  readonly reqs: readonly Requirement[];
  killedAt: number | undefined;
  lastProgressAt: number;
}

interface LocalWorker {
  readonly id: string;
  readonly properties: { name: string; value: string }[];
  readonly offer: Offer;
  readonly maxInflight: number;
  readonly connection: WorkerConnection;
  readonly running: Map<string, RunningTask>;
  /** The id this worker had in its previous session (results of tasks it finished meanwhile are fenced by it). */
  readonly previousId: string | undefined;
  lastSeen: number;
  lastUsed: number;
  draining: boolean;
  removed: boolean;
}

interface LocalWatch {
  readonly name: string;
  readonly actionId: string;
  readonly watch: OperationWatch;
  refreshing: boolean;
  again: boolean;
}

/** A worker outcome not yet written to Redis (retried on each tick while Redis is away). */
interface PendingResult {
  readonly id: string;
  readonly worker: string;
  readonly outcome: WorkerOutcome;
}

/** The `simple` scheduler on shared Redis state: both its client side and its worker side. */
export class RedisScheduler implements ActionScheduler, WorkerScheduler {
  readonly #state: RedisSchedulerState;
  readonly #sub: Redis;
  readonly #replica = `replica-${crypto.randomUUID()}`;
  readonly #matcher: PropertyMatcher;
  readonly #mru: boolean;
  readonly #retainMs: number;
  readonly #clientTimeoutMs: number;
  readonly #leaseMs: number;
  readonly #executingTimeoutMs: number;
  readonly #killAckTimeoutMs: number;
  readonly #maxRetries: number;
  readonly #graceMs: number;
  readonly #tickMs: number;
  readonly #log: (message: string) => void;

  readonly #workers = new Map<string, LocalWorker>();
  readonly #watches = new Map<string, LocalWatch>();
  readonly #watchesByAction = new Map<string, Set<LocalWatch>>();
  readonly #requests = new Map<string, { request: ActionRequest; reqs: Requirement[] }>();
  readonly #pending: PendingResult[] = [];
  /** Executing actions the sweeper saw without a lease (first seen at), requeued on the next look. */
  readonly #leaseless = new Map<string, number>();
  #useSeq = 0;
  #matching = false;
  #matchAgain = false;
  #ticking = false;
  #snapshotActions: SchedulerSnapshot["actions"] = [];
  readonly #finishedLog: SchedulerSnapshot["finished"][number][] = [];
  readonly #failureLog: SchedulerSnapshot["failures"][number][] = [];
  #executionFailures = 0;
  readonly #timer: ReturnType<typeof setInterval>;
  #closed = false;

  /** `store`: the `redis_store` named by `experimental_backend.redis.redis_store`; `name`: the scheduler's. */
  constructor(spec: SimpleSpec, store: RedisStore, name: string, log?: (message: string) => void) {
    this.#matcher = new PropertyMatcher(spec.supported_platform_properties ?? {});
    const settings = resolveSimpleSettings(spec);
    this.#mru = settings.mru;
    this.#retainMs = settings.retainMs;
    this.#clientTimeoutMs = settings.clientTimeoutMs;
    this.#leaseMs = settings.workerTimeoutMs;
    this.#executingTimeoutMs = settings.executingTimeoutMs;
    this.#killAckTimeoutMs = settings.killAckTimeoutMs;
    this.#maxRetries = settings.maxRetries;
    this.#graceMs = settings.graceMs;
    this.#log = log ?? ((m) => console.warn(m));
    this.#tickMs = Math.max(50, Math.min(1000, this.#leaseMs / 4));

    this.#state = new RedisSchedulerState(
      store.newConnection(),
      `${store.keyPrefix}sched/${name}/`,
      store.where,
    );
    this.#sub = store.newConnection();
    this.#sub.on("message", (_channel: string, message: string) => this.#onEvent(message));
    // ioredis subscribes again by itself after a reconnect; the tick re-reads what a lost message changed.
    this.#sub.subscribe(this.#state.channel).catch(() => {});
    this.#timer = setInterval(() => void this.#tick(), this.#tickMs);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Events and ticks

  #onEvent(message: string): void {
    if (this.#closed) return;
    if (message === "q") {
      this.#scheduleMatch();
    } else if (message.startsWith("a:")) {
      for (const w of this.#watchesByAction.get(message.slice(2)) ?? []) this.#refresh(w);
    } else if (message.startsWith("k:")) {
      const rest = message.slice(2);
      const i = rest.lastIndexOf(":");
      const worker = this.#workers.get(rest.slice(i + 1));
      if (worker !== undefined) this.#kill(worker, rest.slice(0, i), "the action was cancelled or timed out");
    }
  }

  async #tick(): Promise<void> {
    if (this.#ticking || this.#closed) return;
    this.#ticking = true;
    try {
      const now = Date.now();
      await this.#retryPending();
      await this.#renewLeases();
      await this.#state.putWorkers(
        [...this.#workers.values()].map((w) => ({
          id: w.id,
          replica: this.#replica,
          properties: w.properties,
          seen: now,
          draining: w.draining,
        })),
      );
      const listened = new Set<string>();
      for (const w of this.#watches.values()) {
        if (w.watch.open > 0 && !w.watch.state.done) listened.add(w.actionId);
        this.#refresh(w);
      }
      await this.#state.touch([...listened], now);
      this.#checkLocalWorkers(now);
      if (await this.#state.sweeperLock(this.#replica, this.#tickMs * 3)) await this.#sweep(now);
      this.#scheduleMatch();
    } catch (err) {
      if (!this.#closed) this.#log(`Scheduler tick failed: ${CairnError.from(err).message}`);
    } finally {
      this.#ticking = false;
    }
  }

  /** Keep-alive and kill-acknowledgement timeouts, and executing timeouts, of this replica's workers. */
  #checkLocalWorkers(now: number): void {
    for (const w of [...this.#workers.values()]) {
      let reason: string | undefined;
      if (now - w.lastSeen > this.#leaseMs) {
        reason = `sent no keep-alive for ${this.#leaseMs / 1000}s`;
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
        this.#removeWorker(w);
        continue;
      }
      if (this.#executingTimeoutMs === 0) continue;
      for (const t of [...w.running.values()]) {
        if (t.killedAt === undefined && now - t.lastProgressAt > this.#executingTimeoutMs) {
          const msg = `Action of operation "${t.id}" made no progress on worker "${w.id}" for ` +
            `${this.#executingTimeoutMs / 1000}s`;
          this.#kill(w, t.id, msg);
          void this.#failAttempt(t.id, w.id, new CairnError(Code.DeadlineExceeded, msg), true).catch(
            () => {},
          );
        }
      }
    }
  }

  async #renewLeases(): Promise<void> {
    for (const w of this.#workers.values()) {
      const ids = [...w.running.values()].filter((t) => t.killedAt === undefined).map((t) => t.id);
      const lost = await this.#state.renew(w.id, ids, this.#leaseMs);
      for (const id of lost) {
        // Requeued after its lease lapsed and now someone else's (or finished): stop this run.
        this.#kill(w, id, "the action was given to another worker");
      }
    }
  }

  /** Global sweeps, by the replica holding the sweeper lock. */
  async #sweep(now: number): Promise<void> {
    // Executing actions whose lease lapsed (their replica died and the worker did not come back in time).
    const leaseless = new Set(await this.#state.leaseless());
    for (const id of [...this.#leaseless.keys()]) if (!leaseless.has(id)) this.#leaseless.delete(id);
    for (const id of leaseless) {
      const since = this.#leaseless.get(id);
      if (since === undefined) {
        this.#leaseless.set(id, now);
        continue;
      }
      if (now - since < this.#tickMs) continue;
      this.#leaseless.delete(id);
      await this.#failAttempt(
        id,
        "",
        new CairnError(Code.Unavailable, `The worker running operation "${id}" was lost (its lease expired)`),
        true,
      );
    }

    const stale = (await this.#state.workers()).filter((w) => now - w.seen > this.#leaseMs * 2);
    await this.#state.removeWorkers(stale.map((w) => w.id));
    const offers = await this.#liveOffers(now);

    const snapshot: Mutable<SchedulerSnapshot["actions"][number]>[] = [];
    for (const id of await this.#state.active()) {
      const a = await this.#state.action(id);
      if (a === undefined || a.stage === "d") continue;
      const parsed = this.#parsed(a);
      if (snapshot.length < 500) {
        snapshot.push({
          id,
          digest: parsed === undefined ? "" : digestText(parsed.request.actionDigest),
          stage: a.stage === "x" ? "executing" : "queued",
          queuedAt: a.queuedAt,
          worker: a.worker,
          attempts: a.attempts,
        });
      }
      if (now - a.clientSeen > this.#clientTimeoutMs) {
        const err = new CairnError(
          Code.DeadlineExceeded,
          `Operation dropped: no client listened to it for ${this.#clientTimeoutMs / 1000}s`,
        );
        await this.#state.abandon(id, encodeResponse(errorResponse(err)), this.#retainMs);
        continue;
      }
      if (a.stage !== "q" || parsed === undefined) continue;
      if (offers.some((o) => this.#matcher.satisfies(parsed.reqs, o, "total"))) {
        if (a.unmatched !== undefined) await this.#state.setUnmatched(id, undefined);
      } else if (a.unmatched === undefined) {
        await this.#state.setUnmatched(id, now);
      } else if (now - a.unmatched >= this.#graceMs) {
        const err = this.#unmatchedError(parsed.request, parsed.reqs, offers);
        await this.#state.abandon(id, encodeResponse(errorResponse(err)), this.#retainMs);
      }
    }
    this.#snapshotActions = snapshot;
  }

  /** Offers of the workers registered by every replica (and not stale), draining ones excluded. */
  async #liveOffers(now: number): Promise<Offer[]> {
    const offers: Offer[] = [];
    for (const w of await this.#state.workers()) {
      if (now - w.seen > this.#leaseMs * 2 || w.draining) continue;
      try {
        offers.push(this.#matcher.parseOffer(w.properties));
      } catch {
        // registered by a replica with other supported properties; not ours to judge
      }
    }
    return offers;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Client side

  /** Workers of this replica, unfinished actions (as of the last sweep), finished ones and failures. */
  snapshot(): SchedulerSnapshot {
    return {
      workers: [...this.#workers.values()].map((w) => ({
        id: w.id,
        properties: Object.fromEntries<string[]>([
          ...[...w.offer.totals].map(([k, n]): [string, string[]] => [k, [String(n)]]),
          ...[...w.offer.values].map(([k, v]): [string, string[]] => [k, [...v]]),
        ]),
        running: w.running.size,
        maxInflight: w.maxInflight,
        lastSeen: w.lastSeen,
      })),
      actions: [...this.#snapshotActions],
      finished: [...this.#finishedLog],
      failures: [...this.#failureLog],
      executionFailures: this.#executionFailures,
    };
  }

  async addAction(request: ActionRequest): Promise<ActionHandle> {
    if (this.#closed) throw new CairnError(Code.Unavailable, "Scheduler is shutting down");
    const reqs = this.#matcher.parseRequirements(request.platform);
    const name = request.operationName ?? newOperationName(request.instanceName);
    const key = request.doNotCache ? "" : mergeKey(request);
    // As in memory: with workers registered (on any replica) of which none could ever run it, fail at once.
    const offers = await this.#liveOffers(Date.now());
    if (offers.length > 0 && !offers.some((o) => this.#matcher.satisfies(reqs, o, "total"))) {
      throw this.#unmatchedError(request, reqs, offers);
    }
    const { id, merged } = await this.#state.add({
      op: name,
      id: name,
      key,
      req: encodeRequest(request),
      prio: request.priority,
      now: Date.now(),
    });
    if (id === "") throw new CairnError(Code.AlreadyExists, `Operation "${name}" already exists`);
    if (!merged) this.#requests.set(id, { request, reqs });
    const state = await this.#readState(name);
    const watch = this.#watch(name, id, state ?? this.#queuedState(name, request));
    return watch.subscribe();
  }

  async findOperation(name: string): Promise<OperationState | undefined> {
    const state = await this.#readState(name);
    if (state !== undefined && !state.done) {
      const op = await this.#state.op(name);
      if (op !== undefined) await this.#state.touch([op.id], Date.now());
    }
    return state;
  }

  async waitOperation(name: string): Promise<ActionHandle | undefined> {
    const existing = this.#watches.get(name);
    if (existing !== undefined) return existing.watch.subscribe();
    const op = await this.#state.op(name);
    if (op === undefined) return undefined;
    const state = await this.#readState(name);
    if (state === undefined) return undefined;
    return this.#watch(name, op.id, state).subscribe();
  }

  async cancelOperation(name: string): Promise<boolean> {
    const resp = encodeResponse(
      errorResponse(new CairnError(Code.Cancelled, `Operation "${name}" was cancelled`)),
    );
    const abandon = encodeResponse(
      errorResponse(new CairnError(Code.Cancelled, `Operation "${name}" was cancelled by its only client`)),
    );
    return await this.#state.cancel(name, resp, abandon, this.#retainMs);
  }

  async listOperations(): Promise<OperationState[]> {
    const out: OperationState[] = [];
    for (const id of await this.#state.active()) {
      for (const name of await this.#state.clientsOf(id)) {
        const s = await this.#readState(name);
        if (s !== undefined) out.push(s);
      }
    }
    return out;
  }

  async deleteOperation(name: string): Promise<boolean> {
    return await this.#state.deleteOp(name);
  }

  /**
   * Stops this replica: its workers are told to go (they reconnect to another replica and keep their
   * actions); operations stay in Redis for the other replicas. Open handles end.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    const ids = [...this.#workers.keys()];
    for (const w of [...this.#workers.values()]) {
      try {
        w.connection.disconnect("scheduler replica is shutting down");
      } catch {
        // gone already
      }
      this.#workers.delete(w.id);
      w.removed = true;
    }
    await this.#state.removeWorkers(ids).catch(() => {});
    for (const w of this.#watches.values()) {
      const prev = w.watch.state;
      if (!prev.done) {
        w.watch.set({
          ...prev,
          done: true,
          stage: ExecutionStage_Value.COMPLETED,
          response: errorResponse(
            new CairnError(Code.Unavailable, "Scheduler replica is shutting down; wait on another replica"),
          ),
        });
      }
    }
    this.#watches.clear();
    this.#watchesByAction.clear();
    this.#sub.disconnect();
    await this.#state.close();
  }

  #queuedState(name: string, r: ActionRequest): OperationState {
    return {
      name,
      instanceName: r.instanceName,
      digestFunction: r.digestFunction,
      actionDigest: r.actionDigest,
      stage: ExecutionStage_Value.QUEUED,
      done: false,
    };
  }

  #parsed(a: StoredAction): { request: ActionRequest; reqs: Requirement[] } | undefined {
    let p = this.#requests.get(a.id);
    if (p === undefined) {
      try {
        const request = decodeRequest(a.req);
        p = { request, reqs: this.#matcher.parseRequirements(request.platform) };
      } catch (err) {
        this.#log(`Cannot read the request of operation "${a.id}": ${CairnError.from(err).message}`);
        return undefined;
      }
      if (this.#requests.size > 10_000) this.#requests.clear();
      this.#requests.set(a.id, p);
    }
    return p;
  }

  /** The state of operation `name` as Redis has it. */
  async #readState(name: string): Promise<OperationState | undefined> {
    const op = await this.#state.op(name);
    if (op === undefined) return undefined;
    const a = await this.#state.action(op.id);
    if (a === undefined) {
      if (op.resp === undefined) return undefined;
    }
    const parsed = a === undefined ? undefined : this.#parsed(a);
    if (parsed === undefined) return undefined;
    const r = parsed.request;
    const base = {
      name,
      instanceName: r.instanceName,
      digestFunction: r.digestFunction,
      actionDigest: r.actionDigest,
    };
    const resp = op.resp ?? (a!.stage === "d" ? a!.resp : undefined);
    if (resp !== undefined) {
      return { ...base, stage: ExecutionStage_Value.COMPLETED, done: true, response: decodeResponse(resp) };
    }
    const stage = a!.stage === "x" ? ExecutionStage_Value.EXECUTING : ExecutionStage_Value.QUEUED;
    const meta: ExecutedActionMetadata | undefined = a!.meta === undefined
      ? undefined
      : fromBinary(ExecutedActionMetadataSchema, b64.decode(a!.meta));
    return meta === undefined
      ? { ...base, stage, done: false }
      : { ...base, stage, done: false, partialExecutionMetadata: meta };
  }

  #watch(name: string, actionId: string, state: OperationState): OperationWatch {
    const existing = this.#watches.get(name);
    if (existing !== undefined) return existing.watch;
    const local: LocalWatch = {
      name,
      actionId,
      refreshing: false,
      again: false,
      watch: new OperationWatch(state, (open) => {
        if (open === 0 && this.#watches.get(name) === local) {
          this.#watches.delete(name);
          this.#watchesByAction.get(actionId)?.delete(local);
          if (this.#watchesByAction.get(actionId)?.size === 0) this.#watchesByAction.delete(actionId);
        }
      }),
    };
    this.#watches.set(name, local);
    let set = this.#watchesByAction.get(actionId);
    if (set === undefined) this.#watchesByAction.set(actionId, set = new Set());
    set.add(local);
    // Catch a change made between the read and the registration.
    this.#refresh(local);
    return local.watch;
  }

  /** Re-reads a watched operation and publishes a changed state (coalesced). */
  #refresh(w: LocalWatch): void {
    if (w.refreshing) {
      w.again = true;
      return;
    }
    if (w.watch.state.done) return;
    w.refreshing = true;
    void (async () => {
      try {
        do {
          w.again = false;
          const s = await this.#readState(w.name);
          const prev = w.watch.state;
          if (s === undefined) {
            // Gone from Redis (it restarted without persistence, or the keys were deleted): the client
            // should execute the action again; UNAVAILABLE is what Bazel retries.
            w.watch.set({
              ...prev,
              stage: ExecutionStage_Value.COMPLETED,
              done: true,
              response: errorResponse(
                new CairnError(
                  Code.Unavailable,
                  `Operation "${w.name}" is gone from the scheduler state in Redis; execute the action again`,
                ),
              ),
            });
            break;
          }
          if (
            s.done !== prev.done || s.stage !== prev.stage ||
            (s.partialExecutionMetadata !== undefined && prev.partialExecutionMetadata === undefined)
          ) {
            w.watch.set(s);
          }
        } while (w.again && !w.watch.state.done);
      } catch {
        // Redis away: the next tick reads again.
      } finally {
        w.refreshing = false;
      }
    })();
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
      this.#removeWorker(old);
    }
    const now = Date.now();
    const worker: LocalWorker = {
      id,
      properties: registration.properties.map((p) => ({ name: p.name, value: p.value })),
      offer,
      maxInflight: max,
      connection: registration.connection,
      running: new Map(),
      previousId: registration.previousWorkerId || undefined,
      lastSeen: now,
      lastUsed: ++this.#useSeq,
      draining: false,
      removed: false,
    };
    this.#workers.set(id, worker);
    void this.#state.putWorkers([
      { id, replica: this.#replica, properties: worker.properties, seen: now, draining: false },
    ])
      .catch(() => {});
    this.#adoptRunning(worker, registration.runningOperationIds ?? []);
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
      disconnected: () => this.#removeWorker(worker),
    };
  }

  /** Re-adopts the tasks a reconnecting worker still runs; those it no longer holds are killed. */
  #adoptRunning(worker: LocalWorker, ids: readonly string[]): void {
    const previous = worker.previousId;
    for (const id of ids) {
      const task: RunningTask = { id, reqs: [], killedAt: undefined, lastProgressAt: Date.now() };
      worker.running.set(id, task);
      void (async () => {
        let held = false;
        if (previous !== undefined) {
          try {
            held = await this.#state.adopt(id, previous, worker.id, this.#leaseMs);
          } catch (err) {
            this.#log(`Cannot re-adopt operation "${id}": ${CairnError.from(err).message}`);
          }
        }
        if (held) {
          this.#log(`Worker "${worker.id}" (was "${previous}") still runs operation "${id}": re-adopted`);
          const a = await this.#state.action(id).catch(() => undefined);
          const parsed = a === undefined ? undefined : this.#parsed(a);
          if (parsed !== undefined && worker.running.get(id) === task && !worker.removed) {
            const adopted: RunningTask = { ...task, reqs: parsed.reqs };
            worker.running.set(id, adopted);
            this.#matcher.adjust(parsed.reqs, worker.offer, -1);
          }
        } else {
          this.#kill(worker, id, "the action is no longer assigned to this worker");
        }
      })();
    }
  }

  #progress(worker: LocalWorker, operationId: string, metadata: ExecutedActionMetadata | undefined): void {
    const now = Date.now();
    worker.lastSeen = now;
    const task = worker.running.get(operationId);
    if (task === undefined || task.killedAt !== undefined) return;
    task.lastProgressAt = now;
    if (metadata !== undefined) {
      void this.#state.progress(
        operationId,
        worker.id,
        encodeBytes(toBinary(ExecutedActionMetadataSchema, metadata)),
      ).catch(() => {});
    }
  }

  #result(worker: LocalWorker, operationId: string, outcome: WorkerOutcome): void {
    worker.lastSeen = Date.now();
    const task = worker.running.get(operationId);
    if (worker.removed) {
      throw new CairnError(
        Code.FailedPrecondition,
        `Worker "${worker.id}" reported a result for operation "${operationId}" after it was removed`,
      );
    }
    if (task === undefined) {
      // Finished while the worker was disconnected: it still holds the action under its previous id.
      if (worker.previousId === undefined) {
        throw new CairnError(
          Code.FailedPrecondition,
          `Worker "${worker.id}" reported a result for operation "${operationId}" it is not running`,
        );
      }
      this.#queueResult({ id: operationId, worker: worker.previousId, outcome });
      return;
    }
    worker.running.delete(operationId);
    this.#matcher.adjust(task.reqs, worker.offer, 1);
    if (task.killedAt === undefined) this.#queueResult({ id: operationId, worker: worker.id, outcome });
    this.#scheduleMatch();
  }

  #queueResult(p: PendingResult): void {
    void this.#writeResult(p).catch((err) => {
      this.#log(
        `Cannot record the result of operation "${p.id}" yet (retrying): ${CairnError.from(err).message}`,
      );
      this.#pending.push(p);
    });
  }

  async #retryPending(): Promise<void> {
    while (this.#pending.length > 0) {
      await this.#writeResult(this.#pending[0]!);
      this.#pending.shift();
    }
  }

  async #writeResult(p: PendingResult): Promise<void> {
    const { id, worker, outcome } = p;
    if ("response" in outcome) {
      const status = outcome.response.status;
      const error = status !== undefined && status.code !== 0
        ? status.message || `code ${status.code}`
        : undefined;
      const a = await this.#state.action(id);
      const done = await this.#state.complete(id, worker, encodeResponse(outcome.response), this.#retainMs);
      if (!done) return;
      const digest = a === undefined ? "" : this.#parsedDigest(a);
      if (error !== undefined) this.#recordFailure(digest, worker, error);
      pushBounded(this.#finishedLog, {
        digest,
        worker,
        exitCode: outcome.response.result?.exitCode,
        error,
        queuedAt: a?.queuedAt ?? 0,
        endedAt: Date.now(),
      });
    } else {
      this.#recordFailure(id, worker, outcome.error.message);
      await this.#failAttempt(id, worker, outcome.error, outcome.error.code !== Code.ResourceExhausted);
    }
  }

  #parsedDigest(a: StoredAction): string {
    const p = this.#parsed(a);
    return p === undefined ? "" : digestText(p.request.actionDigest);
  }

  async #failAttempt(id: string, worker: string, err: CairnError, counted: boolean): Promise<void> {
    const fail = errorResponse(
      new CairnError(
        err.code,
        `Operation "${id}" failed more than max_job_retries (${this.#maxRetries}) times; last error: ${err.message}`,
      ),
    );
    await this.#state.requeue(id, worker, counted, this.#maxRetries, encodeResponse(fail), this.#retainMs);
  }

  #recordFailure(digest: string, worker: string | undefined, error: string): void {
    this.#executionFailures++;
    pushBounded(this.#failureLog, {
      at: Date.now(),
      digest,
      worker,
      error: error.length > 500 ? `${error.slice(0, 500)}…` : error,
    });
  }

  /**
   * Drops a worker of this replica. Its actions stay assigned: their leases lapse unless the worker comes
   * back (to any replica) and re-adopts them; then they are requeued.
   */
  #removeWorker(worker: LocalWorker): void {
    if (worker.removed) return;
    worker.removed = true;
    if (this.#workers.get(worker.id) === worker) this.#workers.delete(worker.id);
    worker.running.clear();
    void this.#state.removeWorkers([worker.id]).catch(() => {});
    this.#scheduleMatch();
  }

  #kill(worker: LocalWorker, id: string, reason: string): void {
    const task = worker.running.get(id);
    if (task === undefined || task.killedAt !== undefined) return;
    task.killedAt = Date.now();
    try {
      worker.connection.killExecution(id, reason);
    } catch {
      // The stream is gone; its disconnect releases the slot.
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Matching

  #scheduleMatch(): void {
    if (this.#closed) return;
    if (this.#matching) {
      this.#matchAgain = true;
      return;
    }
    this.#matching = true;
    void (async () => {
      try {
        do {
          this.#matchAgain = false;
          await this.#match();
        } while (this.#matchAgain && !this.#closed);
      } catch (err) {
        if (!this.#closed) this.#log(`Scheduler matching failed: ${CairnError.from(err).message}`);
      } finally {
        this.#matching = false;
      }
    })();
  }

  #canAccept(w: LocalWorker): boolean {
    return !w.removed && !w.draining && (w.maxInflight === 0 || w.running.size < w.maxInflight);
  }

  async #match(): Promise<void> {
    if (![...this.#workers.values()].some((w) => this.#canAccept(w))) return;
    for (const id of await this.#state.queued(MATCH_WINDOW)) {
      if (![...this.#workers.values()].some((w) => this.#canAccept(w))) return;
      let parsed = this.#requests.get(id);
      if (parsed === undefined) {
        const a = await this.#state.action(id);
        if (a === undefined || a.stage !== "q") continue;
        parsed = this.#parsed(a);
        if (parsed === undefined) continue;
      }
      const worker = this.#pick(parsed.reqs);
      if (worker === undefined) continue;
      // Reserve the slot before the round trip, so a concurrent registration cannot overfill it.
      const task: RunningTask = { id, reqs: parsed.reqs, killedAt: undefined, lastProgressAt: Date.now() };
      worker.running.set(id, task);
      this.#matcher.adjust(parsed.reqs, worker.offer, -1);
      let claimed = false;
      try {
        claimed = await this.#state.claim(id, worker.id, this.#leaseMs);
      } finally {
        if (!claimed && worker.running.get(id) === task) {
          worker.running.delete(id);
          this.#matcher.adjust(parsed.reqs, worker.offer, 1);
        }
      }
      if (!claimed) continue;
      if (worker.removed) {
        await this.#state.requeue(id, worker.id, false, this.#maxRetries, "", this.#retainMs);
        continue;
      }
      worker.lastUsed = ++this.#useSeq;
      const a = await this.#state.action(id).catch(() => undefined);
      const r = parsed.request;
      try {
        worker.connection.startExecution({
          operationId: id,
          instanceName: r.instanceName,
          digestFunction: r.digestFunction,
          actionDigest: r.actionDigest,
          action: r.action,
          skipCacheLookup: r.skipCacheLookup,
          queuedAt: a?.queuedAt ?? Date.now(),
          platform: r.platform,
          uploadToActionCache: !r.doNotCache,
        });
      } catch (err) {
        this.#log(`Worker "${worker.id}" could not be sent work: ${CairnError.from(err).message}`);
        worker.connection.disconnect("could not be sent work");
        this.#removeWorker(worker);
        await this.#state.requeue(id, worker.id, false, this.#maxRetries, "", this.#retainMs);
      }
    }
  }

  #pick(reqs: readonly Requirement[]): LocalWorker | undefined {
    let best: LocalWorker | undefined;
    for (const w of this.#workers.values()) {
      if (!this.#canAccept(w) || !this.#matcher.satisfies(reqs, w.offer, "available")) continue;
      if (best === undefined || (this.#mru ? w.lastUsed > best.lastUsed : w.lastUsed < best.lastUsed)) {
        best = w;
      }
    }
    return best;
  }

  #unmatchedError(
    request: ActionRequest,
    reqs: readonly Requirement[],
    offers: readonly Offer[],
  ): CairnError {
    return unmatchedError(this.#matcher, request, reqs, offers);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
