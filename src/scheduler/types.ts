/**
 * The scheduler interfaces: the client side ({@linkcode ActionScheduler}, used by the Execution and Operations
 * services) and the worker side ({@linkcode WorkerScheduler}, used by the worker API).
 *
 * @example
 * ```ts
 * import type { ActionRequest, ActionScheduler } from "./types.ts";
 * async function run(scheduler: ActionScheduler, request: ActionRequest) {
 *   const handle = await scheduler.addAction(request);
 *   for await (const state of handle) console.log(state.stage);
 * }
 * ```
 * @module
 */
import type {
  Action,
  DigestFunction_Value,
  ExecutedActionMetadata,
  ExecuteResponse,
  ExecutionStage_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { Digest } from "../digest/digest.ts";
import type { CairnError } from "../util/error.ts";

/** One platform property (of an action, or offered by a worker). */
export interface PlatformProperty {
  readonly name: string;
  readonly value: string;
}

/** An action submitted for execution. */
export interface ActionRequest {
  readonly instanceName: string;
  readonly digestFunction: DigestFunction_Value;
  readonly actionDigest: Digest;
  readonly action: Action;
  /** The action's platform (`Action.platform`, else `Command.platform`). */
  readonly platform: readonly PlatformProperty[];
  readonly skipCacheLookup: boolean;
  /** Higher runs first. */
  readonly priority: number;
  /** `Action.do_not_cache`: never merged with other requests, never uploaded to the action cache. */
  readonly doNotCache: boolean;
  /** The operation name to use (wrapping schedulers pass theirs on); a new one when absent. */
  readonly operationName?: string;
}

/** The state of one operation, as reported to clients. */
export interface OperationState {
  /** `{instance}/operations/{uuid}`. */
  readonly name: string;
  readonly instanceName: string;
  readonly digestFunction: DigestFunction_Value;
  readonly actionDigest: Digest;
  readonly stage: ExecutionStage_Value;
  readonly done: boolean;
  /** What the worker reported so far, while executing. */
  readonly partialExecutionMetadata?: ExecutedActionMetadata;
  /** The terminal response (set when `done`). */
  readonly response?: ExecuteResponse;
}

/**
 * A subscription to one operation: iterating yields the current state, then each later state (states may be
 * coalesced), and ends after the `done` one or when closed.
 */
export interface ActionHandle extends AsyncIterable<OperationState> {
  /** The operation name. */
  readonly name: string;
  /** The latest state. */
  current(): OperationState;
  /** Stops listening (ends the iteration); idempotent. */
  close(): void;
}

/** The client side of a scheduler. */
export interface ActionScheduler {
  /** Queues an action; rejects with INVALID_ARGUMENT / FAILED_PRECONDITION when it can never run. */
  addAction(request: ActionRequest): Promise<ActionHandle>;
  /** The latest state of an operation, or undefined when unknown (or expired). */
  findOperation(name: string): Promise<OperationState | undefined>;
  /** A new handle on an existing operation, or undefined when unknown. */
  waitOperation(name: string): Promise<ActionHandle | undefined>;
  /** Cancels an operation; false when unknown or already done. */
  cancelOperation(name: string): Promise<boolean>;
  /** Every known operation's latest state. */
  listOperations(): Promise<OperationState[]>;
  /** Forgets an operation (does not cancel it); false when unknown. */
  deleteOperation(name: string): Promise<boolean>;
  /** Stops timers and fails in-flight operations. */
  close(): Promise<void>;
}

/** A task sent to a worker (the scheduler's StartExecution). */
export interface WorkerTask {
  /** Identifies the task in the worker's updates. */
  readonly operationId: string;
  readonly instanceName: string;
  readonly digestFunction: DigestFunction_Value;
  readonly actionDigest: Digest;
  readonly action: Action;
  readonly skipCacheLookup: boolean;
  /** When the action was queued (ms since the epoch). */
  readonly queuedAt: number;
  readonly platform: readonly PlatformProperty[];
  /** Whether the worker should upload the result to the action cache. */
  readonly uploadToActionCache: boolean;
  /** W3C trace context of the scheduler's span for this attempt, when tracing is on. */
  readonly traceparent?: string | undefined;
}

/** How the scheduler talks to a connected worker. Methods may throw when the stream is gone. */
export interface WorkerConnection {
  /** Gives the worker a task. */
  startExecution(task: WorkerTask): void;
  /** Asks the worker to kill a task; it answers with the task's result (an error). */
  killExecution(operationId: string, reason: string): void;
  /** Tells the worker it is dropped and ends the stream. */
  disconnect(reason: string): void;
}

/** What a worker registers with. */
export interface WorkerRegistration {
  /** Preferred id (empty or absent: the scheduler picks one). */
  readonly workerId?: string;
  readonly properties: readonly PlatformProperty[];
  /** Tasks run at once; 0 = unlimited. */
  readonly maxInflightTasks: number;
  readonly connection: WorkerConnection;
  /**
   * The id the worker had in its previous session (its Hello's `worker_id`), when it reconnects. The Redis
   * backend re-adopts `runningOperationIds` still assigned to that id; the in-memory scheduler ignores both.
   */
  readonly previousWorkerId?: string;
  /** Operations still running on the worker from its previous session (Hello `running_operation_ids`). */
  readonly runningOperationIds?: readonly string[];
}

/** A task's terminal report: the ExecuteResponse, or an infrastructure failure (the action is retried). */
export type WorkerOutcome =
  | { readonly response: ExecuteResponse }
  | { readonly error: CairnError };

/** A registered worker's side of the conversation, called as its messages arrive. */
export interface WorkerSession {
  /** The id the scheduler gave the worker. */
  readonly workerId: string;
  /** The worker is alive. */
  keepAlive(): void;
  /** A task is running (the worker's `started` update, optionally with partial metadata). */
  progress(operationId: string, metadata?: ExecutedActionMetadata | undefined): void;
  /** A task ended; throws FAILED_PRECONDITION for a task the worker is not running. */
  result(operationId: string, outcome: WorkerOutcome): void;
  /** The worker takes no new work. */
  goingAway(): void;
  /** The worker's stream ended: its running tasks are requeued. */
  disconnected(reason: string): void;
}

/** The worker side of a scheduler. */
export interface WorkerScheduler {
  /** Registers a worker; INVALID_ARGUMENT for unsupported properties or a bad `maxInflightTasks`. */
  registerWorker(registration: WorkerRegistration): WorkerSession;
  /** What the scheduler holds now, for metrics and the status page. */
  snapshot?(): SchedulerSnapshot;
}

/** A scheduler's state at one moment (metrics, the status page). */
export interface SchedulerSnapshot {
  readonly workers: readonly {
    readonly id: string;
    /** Platform properties the worker offers: name → values. */
    readonly properties: Record<string, string[]>;
    readonly running: number;
    /** 0: no limit. */
    readonly maxInflight: number;
    readonly lastSeen: number;
  }[];
  /** Actions not finished: queued or executing. */
  readonly actions: readonly {
    readonly id: string;
    /** `hash/size` of the action. */
    readonly digest: string;
    readonly stage: "queued" | "executing";
    readonly queuedAt: number;
    readonly worker: string | undefined;
    readonly attempts: number;
  }[];
  /** The last finished actions, newest last. */
  readonly finished: readonly {
    readonly digest: string;
    readonly worker: string | undefined;
    readonly exitCode: number | undefined;
    /** The error status message when it ended with one. */
    readonly error: string | undefined;
    readonly queuedAt: number;
    readonly endedAt: number;
  }[];
  /** The last failed executions (error statuses and failed attempts), newest last. */
  readonly failures: readonly {
    readonly at: number;
    readonly digest: string;
    readonly worker: string | undefined;
    readonly error: string;
  }[];
  /** Executions that failed (an error status or a failed attempt) since start. */
  readonly executionFailures: number;
}

/** A scheduler built from config: its client side and, when its chain ends in `simple`, its worker side. */
export interface BuiltScheduler {
  readonly actions: ActionScheduler;
  readonly workers?: WorkerScheduler | undefined;
}
