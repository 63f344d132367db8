/**
 * The `cache_lookup` scheduler: answers an action from the action cache before forwarding it.
 *
 * A new operation starts in `CACHE_CHECK`. A hit completes it with `cached_result: true`; a miss (or
 * `skip_cache_lookup`, or `do_not_cache`) forwards it, under the same operation name, to the nested
 * scheduler. Entries are read as the ActionCache service stores them (`readActionResult`); any lookup error
 * counts as a miss.
 *
 * @example
 * ```ts ignore
 * import { CacheLookupScheduler } from "./cache_lookup_scheduler.ts";
 * import { SimpleScheduler } from "./simple_scheduler.ts";
 * import { actionRequest } from "./test_actions.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const acStore = createMemoryStore();
 * const inner = new SimpleScheduler({});
 * const scheduler = new CacheLookupScheduler(acStore, inner);
 * const handle = await scheduler.addAction(actionRequest("a")); // first state: CACHE_CHECK
 * handle.close();
 * await scheduler.close();
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ActionResult,
  type ExecuteResponse,
  ExecuteResponseSchema,
  ExecutionStage_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { errorResponse } from "./error_response.ts";
import { newOperationName } from "./operation_name.ts";
import { OperationWatch } from "./operation_watch.ts";
import { readActionResult } from "../service/action_cache_service.ts";
import type { ActionHandle, ActionRequest, ActionScheduler, OperationState } from "./types.ts";

/** How long cache hits stay queryable by name. */
const RETAIN_HITS_MS = 60_000;

interface Entry {
  readonly name: string;
  readonly watch: OperationWatch;
  /** Set once forwarded: the nested scheduler's first handle, until a listener takes it. */
  spare: ActionHandle | undefined;
  forwarded: boolean;
  cancelled: boolean;
  completedAt: number | undefined;
}

/** Wraps a scheduler with an action-cache check. */
export class CacheLookupScheduler implements ActionScheduler {
  readonly #ac: StoreDriver;
  readonly #inner: ActionScheduler;
  readonly #entries = new Map<string, Entry>();

  constructor(acStore: StoreDriver, inner: ActionScheduler) {
    this.#ac = acStore;
    this.#inner = inner;
  }

  addAction(request: ActionRequest): Promise<ActionHandle> {
    this.#expire();
    if (request.skipCacheLookup || request.doNotCache) return this.#inner.addAction(request);
    const name = request.operationName ?? newOperationName(request.instanceName);
    const entry: Entry = {
      name,
      watch: new OperationWatch({
        name,
        instanceName: request.instanceName,
        digestFunction: request.digestFunction,
        actionDigest: request.actionDigest,
        stage: ExecutionStage_Value.CACHE_CHECK,
        done: false,
      }),
      spare: undefined,
      forwarded: false,
      cancelled: false,
      completedAt: undefined,
    };
    this.#entries.set(name, entry);
    const handle = this.#handle(entry);
    void this.#lookupThenForward(entry, { ...request, operationName: name });
    return Promise.resolve(handle);
  }

  async #lookupThenForward(entry: Entry, request: ActionRequest): Promise<void> {
    let result: ActionResult | undefined;
    try {
      result = await readActionResult(this.#ac, request.actionDigest);
    } catch {
      result = undefined; // absent or unreadable: a miss
    }
    if (entry.cancelled) return;
    if (result !== undefined) {
      this.#complete(entry, create(ExecuteResponseSchema, { result, cachedResult: true }));
      return;
    }
    try {
      const inner = await this.#inner.addAction(request);
      if (entry.cancelled) {
        inner.close();
        await this.#inner.cancelOperation(entry.name);
        return;
      }
      entry.spare = inner;
      entry.forwarded = true;
      this.#entries.delete(entry.name);
      if (entry.watch.open === 0) {
        entry.spare = undefined;
        inner.close();
      }
      entry.watch.set(entry.watch.state); // wake listeners to switch over
    } catch (err) {
      this.#complete(entry, errorResponse(CairnError.from(err)));
    }
  }

  #complete(entry: Entry, response: ExecuteResponse): void {
    entry.completedAt = Date.now();
    entry.watch.set({ ...entry.watch.state, stage: ExecutionStage_Value.COMPLETED, done: true, response });
  }

  #handle(entry: Entry): ActionHandle {
    const own = entry.watch.subscribe();
    const inner = this.#inner;
    let delegate: ActionHandle | undefined;
    let closed = false;
    return {
      name: entry.name,
      current: () => delegate?.current() ?? own.current(),
      close: () => {
        closed = true;
        own.close();
        delegate?.close();
        if (entry.spare !== undefined && entry.watch.open === 0) {
          entry.spare.close();
          entry.spare = undefined;
        }
      },
      async *[Symbol.asyncIterator]() {
        try {
          for await (const state of own) {
            if (entry.forwarded) break;
            yield state;
            if (state.done) return;
            if (entry.forwarded) break;
          }
          if (closed || !entry.forwarded) return;
          delegate = entry.spare ?? await inner.waitOperation(entry.name);
          entry.spare = undefined;
          if (delegate === undefined) return;
          if (closed) {
            delegate.close();
            return;
          }
          yield* delegate;
        } finally {
          own.close();
          delegate?.close();
        }
      },
    };
  }

  #expire(): void {
    const now = Date.now();
    for (const [name, e] of this.#entries) {
      if (e.completedAt !== undefined && now - e.completedAt > RETAIN_HITS_MS) this.#entries.delete(name);
    }
  }

  findOperation(name: string): Promise<OperationState | undefined> {
    const entry = this.#entries.get(name);
    return entry !== undefined ? Promise.resolve(entry.watch.state) : this.#inner.findOperation(name);
  }

  waitOperation(name: string): Promise<ActionHandle | undefined> {
    const entry = this.#entries.get(name);
    return entry !== undefined ? Promise.resolve(this.#handle(entry)) : this.#inner.waitOperation(name);
  }

  cancelOperation(name: string): Promise<boolean> {
    const entry = this.#entries.get(name);
    if (entry === undefined) return this.#inner.cancelOperation(name);
    if (entry.watch.state.done) return Promise.resolve(false);
    entry.cancelled = true;
    this.#complete(entry, errorResponse(new CairnError(Code.Cancelled, `Operation "${name}" was cancelled`)));
    return Promise.resolve(true);
  }

  async listOperations(): Promise<OperationState[]> {
    this.#expire();
    const own = [...this.#entries.values()].map((e) => e.watch.state);
    return [...own, ...await this.#inner.listOperations()];
  }

  deleteOperation(name: string): Promise<boolean> {
    if (this.#entries.delete(name)) return Promise.resolve(true);
    return this.#inner.deleteOperation(name);
  }

  close(): Promise<void> {
    this.#entries.clear();
    return this.#inner.close();
  }
}
