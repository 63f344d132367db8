/**
 * The `local` worker: connects to the scheduler's WorkerApi (one long-lived gRPC bidi stream over HTTP/2),
 * says Hello with its platform properties and capacity, keeps the session alive, and runs the actions it
 * is given ({@linkcode runAction}) in the sandbox, reporting each as ExecutionUpdates.
 *
 * - Start: checks the sandbox (no bwrap → refuses unless `sandbox: "none"`), empties `work_directory`,
 *   finds the fast filesystem store inside `cas_fast_slow_store`, runs `query_cmd` properties (each
 *   non-empty output line is a value).
 * - Before each action `experimental_precondition_script` runs (no shell); a non-zero exit declines the
 *   task with an `internal_error` of UNAVAILABLE so the scheduler places it elsewhere or later.
 * - A lost stream is re-opened with back-off; running actions continue and their results are sent on the
 *   next session (Hello lists them in `running_operation_ids`).
 * - {@linkcode LocalWorker.shutdown} (SIGTERM): sends GoingAway, accepts nothing more, finishes running
 *   actions and reports them, then closes the stream.
 *
 * @example
 * ```ts ignore
 * import { createLocalWorker } from "./local_worker.ts";
 * const worker = createLocalWorker(config.workers[0].local, { stores });
 * await worker.start();
 * Deno.addSignalListener("SIGTERM", () => void worker.shutdown("SIGTERM"));
 * await worker.closed;
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import {
  ExecutedActionMetadataSchema,
  ExecutionStage_Value,
  Platform_PropertySchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  type ExecutionUpdate,
  ExecutionUpdateSchema,
  GoingAwaySchema,
  type SchedulerMessage,
  type StartExecution,
  WorkerApi,
  type WorkerMessage,
  WorkerMessageSchema,
} from "../gen/cairn/worker/v1/worker_api_pb.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import type { StoreDriver, StoreLookup } from "../store/types.ts";
import { delay } from "../util/async.ts";
import { CairnError, Code } from "../util/error.ts";
import {
  type LocalWorkerSpec,
  type ResolvedWorkerSpec,
  resolveLocalWorkerSpec,
} from "./local_worker_spec.ts";
import { type ActionContext, removeTree, runAction } from "./run_action.ts";
import { traceAction } from "./worker_tracing.ts";
import { createSandbox, type Sandbox } from "./sandbox.ts";
import { createGrpcClient, type GrpcClient } from "../transport/grpc_client.ts";
import { WorkerCas } from "./worker_cas.ts";
import { consoleWorkerLog, type WorkerLog } from "./worker_log.ts";

/** The abort reason of actions killed because their worker stops (they are rerun elsewhere). */
const WORKER_STOPPED = new Error("worker stopped");

/** Dependencies of a worker. */
export interface LocalWorkerDeps {
  /** The stores the worker names (`cas_fast_slow_store`, `upload_action_result.ac_store`). */
  readonly stores: StoreLookup;
  readonly log?: WorkerLog;
  /** Position in `workers` (default name and messages). */
  readonly index?: number;
  /** Software version sent in Hello. */
  readonly version?: string;
  /**
   * The worker credential when the config sets no `worker_api_endpoint.worker_token` (`$CAIRN_WORKER_TOKEN`,
   * else the one a parent Cairn handed this process).
   */
  readonly workerToken?: string | undefined;
}

/** A running local worker. */
export interface LocalWorker {
  /** The id the scheduler assigned (empty before the first Welcome). */
  readonly workerId: string;
  /** Platform properties sent in Hello (after `start`). */
  readonly properties: readonly { readonly name: string; readonly value: string }[];
  /** Number of actions running now. */
  readonly running: number;
  /** Prepares and connects; resolves once the worker is ready (the session is opened in the background). */
  start(): Promise<void>;
  /** GoingAway, finish running actions, then close. Resolves when closed. */
  shutdown(reason?: string): Promise<void>;
  /** Kills running actions and closes at once. */
  stop(): Promise<void>;
  /** Resolves when the worker has closed. */
  readonly closed: Promise<void>;
}

/** Builds a worker from its `local` config; call `start()`. */
export function createLocalWorker(spec: LocalWorkerSpec, deps: LocalWorkerDeps): LocalWorker {
  return new Worker(resolveLocalWorkerSpec(spec, deps.index ?? 0), deps);
}

/** Runs each `query_cmd` (no shell) and returns every property value. */
export async function queryPlatformProperties(
  properties: ResolvedWorkerSpec["platformProperties"],
): Promise<{ name: string; value: string }[]> {
  const out: { name: string; value: string }[] = [];
  for (const [name, source] of Object.entries(properties)) {
    if ("values" in source) {
      for (const value of source.values) out.push({ name, value });
      continue;
    }
    const [program, ...args] = source.query_cmd.trim().split(/\s+/);
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command(program!, { args, stdin: "null", stdout: "piped", stderr: "piped" })
        .output();
    } catch (err) {
      throw new CairnError(
        Code.FailedPrecondition,
        `Cannot start worker: query_cmd of platform property "${name}" (${source.query_cmd}) failed: ${
          (err as Error).message
        }`,
      );
    }
    if (!output.success) {
      throw new CairnError(
        Code.FailedPrecondition,
        `Cannot start worker: query_cmd of platform property "${name}" (${source.query_cmd}) exited with ${output.code}: ${
          new TextDecoder().decode(output.stderr).trim()
        }`,
      );
    }
    for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
      const value = line.trim();
      if (value) out.push({ name, value });
    }
  }
  return out;
}

/** Runs the precondition script; true when it exits 0. */
export async function preconditionPasses(script: string | undefined): Promise<boolean> {
  if (!script) return true;
  const [program, ...args] = script.trim().split(/\s+/);
  try {
    const out = await new Deno.Command(program!, { args, stdin: "null", stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/** A simple unbounded async queue used as the outgoing half of the bidi stream. */
class Outbox<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift()!;
      if (this.#closed) return;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}

interface Running {
  readonly task: StartExecution;
  readonly abort: AbortController;
}

class Worker implements LocalWorker {
  #spec: ResolvedWorkerSpec;
  #deps: LocalWorkerDeps;
  #log: WorkerLog;
  #workerId = "";
  #properties: { name: string; value: string }[] = [];
  #running = new Map<string, Running>();
  #tasks = new Set<Promise<void>>();
  /** Terminal updates not yet handed to a session (sent on the next one). */
  #undelivered: ExecutionUpdate[] = [];
  #outbox: Outbox<WorkerMessage> | undefined;
  #session: AbortController | undefined;
  #stopping = false;
  #goingAway = false;
  #closedResolve!: () => void;
  readonly closed: Promise<void>;
  #loop: Promise<void> | undefined;
  #ctx: ActionContext | undefined;
  #client: GrpcClient | undefined;
  #sleepAbort = new AbortController();

  constructor(spec: ResolvedWorkerSpec, deps: LocalWorkerDeps) {
    this.#spec = spec;
    this.#deps = deps;
    this.#log = deps.log ?? consoleWorkerLog(`worker ${spec.name}`);
    this.closed = new Promise((r) => (this.#closedResolve = r));
  }

  get workerId(): string {
    return this.#workerId;
  }

  get properties() {
    return this.#properties;
  }

  get running(): number {
    return this.#running.size;
  }

  async start(): Promise<void> {
    const spec = this.#spec;
    const sandbox: Sandbox = await createSandbox({
      kind: spec.sandbox,
      ...(spec.sandboxPaths ? { readOnlyPaths: spec.sandboxPaths } : {}),
      limits: spec.limits,
    });
    await removeTree(spec.workDirectory);
    await Deno.mkdir(spec.workDirectory, { recursive: true });
    const cas = WorkerCas.from(this.#deps.stores.get(spec.casStore), `${spec.workDirectory}/exec`);
    const acStore: StoreDriver | undefined = spec.acStore ? this.#deps.stores.get(spec.acStore) : undefined;
    this.#properties = await queryPlatformProperties(spec.platformProperties);
    this.#ctx = { spec, cas, acStore, sandbox, workerId: () => this.#workerId, log: this.#log };
    const token = spec.workerToken ?? this.#deps.workerToken;
    this.#client = createGrpcClient(spec.endpoint, {
      tls: spec.endpointTls,
      pingIntervalMs: 30_000,
      pingTimeoutMs: 15_000,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    this.#loop = this.#connectLoop();
  }

  async shutdown(reason = "worker shutting down"): Promise<void> {
    if (!this.#loop) return this.#finish();
    if (!this.#goingAway) {
      this.#goingAway = true;
      this.#log.info(`Going away (${reason}); waiting for ${this.#running.size} running action(s)`);
      this.#outbox?.push(
        create(WorkerMessageSchema, {
          msg: { case: "goingAway", value: create(GoingAwaySchema, { reason }) },
        }),
      );
    }
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
    // Give the session a moment to deliver the last updates, then close our half.
    this.#stopping = true;
    this.#outbox?.close();
    this.#sleepAbort.abort();
    const grace = new AbortController();
    await Promise.race([this.#loop, delay(2000, grace.signal)]);
    grace.abort();
    this.#session?.abort();
    await this.#loop;
    await this.#finish();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#goingAway = true;
    for (const r of this.#running.values()) r.abort.abort(WORKER_STOPPED);
    await Promise.all([...this.#tasks]);
    this.#outbox?.close();
    this.#session?.abort();
    this.#sleepAbort.abort();
    await this.#loop;
    await this.#finish();
  }

  async #finish(): Promise<void> {
    this.#client?.session.abort();
    this.#closedResolve();
    await this.closed;
  }

  async #connectLoop(): Promise<void> {
    let backoff = 250;
    while (!this.#stopping) {
      const opened = Date.now();
      try {
        await this.#session_();
      } catch (err) {
        if (this.#stopping) break;
        const msg = err instanceof ConnectError ? err.rawMessage : (err as Error).message;
        this.#log.warn(`Session with ${this.#spec.endpoint} ended: ${msg}`);
      }
      if (this.#stopping) break;
      if (Date.now() - opened > 10_000) backoff = 250;
      await delay(backoff, this.#sleepAbort.signal);
      backoff = Math.min(backoff * 2, 10_000);
    }
  }

  async #session_(): Promise<void> {
    const client = createClient(WorkerApi, this.#client!.transport);
    const outbox = new Outbox<WorkerMessage>();
    const session = new AbortController();
    this.#outbox = outbox;
    this.#session = session;
    outbox.push(create(WorkerMessageSchema, {
      msg: {
        case: "hello",
        value: {
          workerId: this.#workerId,
          properties: this.#properties.map((p) => create(Platform_PropertySchema, p)),
          maxInflightTasks: this.#spec.maxInflightTasks,
          version: this.#deps.version ?? "cairn",
          runningOperationIds: [...this.#running.keys()],
        },
      },
    }));
    if (this.#goingAway) {
      outbox.push(create(WorkerMessageSchema, { msg: { case: "goingAway", value: { reason: "" } } }));
    }
    let lastHeard = Date.now();
    let keepAlive: ReturnType<typeof setInterval> | undefined;
    try {
      for await (const message of client.connect(outbox, { signal: session.signal })) {
        lastHeard = Date.now();
        if (message.msg.case === "welcome") {
          this.#workerId = message.msg.value.workerId || this.#workerId;
          const interval = message.msg.value.keepaliveInterval
            ? Math.max(100, durationMs(message.msg.value.keepaliveInterval))
            : 10_000;
          this.#log.info(`Connected to ${this.#spec.endpoint} as ${this.#workerId}`);
          if (keepAlive !== undefined) clearInterval(keepAlive);
          keepAlive = setInterval(() => {
            if (Date.now() - lastHeard > interval * 4) {
              this.#log.warn(`No word from the scheduler for ${Date.now() - lastHeard} ms; reconnecting`);
              session.abort();
              return;
            }
            outbox.push(create(WorkerMessageSchema, { msg: { case: "keepAlive", value: {} } }));
          }, interval);
          // Results that finished while disconnected.
          for (const u of this.#undelivered.splice(0)) {
            outbox.push(create(WorkerMessageSchema, { msg: { case: "executionUpdate", value: u } }));
          }
        } else {
          this.#handle(message);
        }
      }
    } catch (err) {
      if (!session.signal.aborted) throw err;
    } finally {
      if (keepAlive !== undefined) clearInterval(keepAlive);
      outbox.close();
      if (this.#outbox === outbox) this.#outbox = undefined;
    }
  }

  #handle(message: SchedulerMessage): void {
    switch (message.msg.case) {
      case "startExecution":
        this.#accept(message.msg.value);
        break;
      case "killExecution": {
        const r = this.#running.get(message.msg.value.operationId);
        r?.abort.abort(new Error(message.msg.value.reason || "killed by the scheduler"));
        break;
      }
      case "disconnect":
        this.#log.warn(`Scheduler disconnected this worker: ${message.msg.value.reason}`);
        this.#session?.abort();
        break;
      default:
        break;
    }
  }

  #accept(task: StartExecution): void {
    const decline = (code: Code, message: string) =>
      this.#deliver(create(ExecutionUpdateSchema, {
        operationId: task.operationId,
        instanceName: task.instanceName,
        ...(task.actionDigest ? { actionDigest: task.actionDigest } : {}),
        update: { case: "internalError", value: create(StatusSchema, { code, message }) },
      }));
    if (this.#goingAway) return decline(Code.Unavailable, "Worker is going away");
    if (this.#running.has(task.operationId)) return;
    if (this.#running.size >= this.#spec.maxInflightTasks) {
      return decline(
        Code.ResourceExhausted,
        `Worker is full (${this.#spec.maxInflightTasks} actions running)`,
      );
    }
    const abort = new AbortController();
    this.#running.set(task.operationId, { task, abort });
    const job = (async () => {
      let cleanup: (() => Promise<void>) | undefined;
      try {
        if (!(await preconditionPasses(this.#spec.preconditionScript))) {
          this.#log.warn(`Precondition script failed; declining ${task.operationId}`);
          decline(Code.Unavailable, "Worker precondition script failed; not accepting work now");
          return;
        }
        this.#deliver(
          create(ExecutionUpdateSchema, {
            operationId: task.operationId,
            instanceName: task.instanceName,
            ...(task.actionDigest ? { actionDigest: task.actionDigest } : {}),
            update: {
              case: "started",
              value: {
                stage: ExecutionStage_Value.EXECUTING,
                partialExecutionMetadata: create(ExecutedActionMetadataSchema, {
                  worker: this.#workerId,
                  workerStartTimestamp: timestampFromDate(new Date()),
                }),
              },
            },
          }),
          false,
        );
        const outcome = await traceAction(
          task,
          this.#workerId,
          () => runAction(this.#ctx!, task, abort.signal, (c) => cleanup = c),
        );
        // Killed because this worker is stopping (not on the scheduler's request): the run says nothing about
        // the action, so the scheduler is told to run it again elsewhere rather than given a killed result.
        const stopped = abort.signal.aborted && abort.signal.reason === WORKER_STOPPED;
        this.#deliver(create(ExecutionUpdateSchema, {
          operationId: task.operationId,
          instanceName: task.instanceName,
          ...(task.actionDigest ? { actionDigest: task.actionDigest } : {}),
          update: stopped
            ? {
              case: "internalError",
              value: create(StatusSchema, {
                code: Code.Unavailable,
                message: `Worker ${this.#workerId} stopped while running the action`,
              }),
            }
            : "response" in outcome
            ? { case: "response", value: outcome.response }
            : { case: "internalError", value: outcome.internalError },
        }));
      } finally {
        // The result is on its way; the action's directory is removed before the slot takes new work.
        await cleanup?.();
        this.#running.delete(task.operationId);
      }
    })();
    this.#tasks.add(job);
    job.finally(() => this.#tasks.delete(job));
  }

  /** Sends an update now, or keeps a terminal one for the next session. */
  #deliver(update: ExecutionUpdate, terminal = true): void {
    if (this.#outbox) {
      this.#outbox.push(create(WorkerMessageSchema, { msg: { case: "executionUpdate", value: update } }));
    } else if (terminal) {
      this.#undelivered.push(update);
    }
  }
}
