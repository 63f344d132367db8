/**
 * A watch over one operation's state: the latest value plus subscribers that wake on change.
 *
 * Subscribers ({@linkcode ActionHandle}s) see the current state, then each later state; states set in quick
 * succession may be coalesced into the latest. The watch counts open handles so a scheduler can tell when
 * nobody listens any more.
 *
 * @example
 * ```ts
 * import { OperationWatch } from "./operation_watch.ts";
 * import type { OperationState } from "./types.ts";
 * import { DigestFunction_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
 * import { EMPTY_DIGEST } from "../digest/digest.ts";
 * const initialState: OperationState = {
 *   name: "main/operations/1",
 *   instanceName: "main",
 *   digestFunction: DigestFunction_Value.SHA256,
 *   actionDigest: EMPTY_DIGEST,
 *   stage: 2,
 *   done: false,
 * };
 * const watch = new OperationWatch(initialState);
 * const handle = watch.subscribe();
 * watch.set({ ...initialState, stage: 4, done: true });
 * for await (const s of handle) console.log(s.stage); // 4
 * ```
 * @module
 */
import type { ActionHandle, OperationState } from "./types.ts";

/** Latest-value channel of {@linkcode OperationState}s. */
export class OperationWatch {
  #state: OperationState;
  #version = 0;
  #wakers = new Set<() => void>();
  #open = 0;
  readonly #onOpenChange: ((open: number) => void) | undefined;

  /** `onOpenChange` is told the number of open handles after each subscribe/close. */
  constructor(state: OperationState, onOpenChange?: (open: number) => void) {
    this.#state = state;
    this.#onOpenChange = onOpenChange;
  }

  /** The latest state. */
  get state(): OperationState {
    return this.#state;
  }

  /** Number of open handles. */
  get open(): number {
    return this.#open;
  }

  /** Monotonic change counter. */
  get version(): number {
    return this.#version;
  }

  /** Publishes a new state and wakes every subscriber. */
  set(state: OperationState): void {
    this.#state = state;
    this.#version++;
    const wakers = [...this.#wakers];
    this.#wakers.clear();
    for (const w of wakers) w();
  }

  /** Resolves at the next {@linkcode set} (or when `abort` is called through the returned canceller). */
  nextChange(): { promise: Promise<void>; cancel: () => void } {
    const { promise, resolve } = Promise.withResolvers<void>();
    const waker = () => resolve();
    this.#wakers.add(waker);
    return {
      promise,
      cancel: () => {
        this.#wakers.delete(waker);
        resolve();
      },
    };
  }

  /** Opens a handle. */
  subscribe(): ActionHandle {
    this.#open++;
    this.#onOpenChange?.(this.#open);
    return new WatchHandle(this, () => {
      this.#open--;
      this.#onOpenChange?.(this.#open);
    });
  }
}

class WatchHandle implements ActionHandle {
  readonly #watch: OperationWatch;
  #onClose: (() => void) | undefined;
  #pending: { cancel: () => void } | undefined;

  constructor(watch: OperationWatch, onClose: () => void) {
    this.#watch = watch;
    this.#onClose = onClose;
  }

  get name(): string {
    return this.#watch.state.name;
  }

  current(): OperationState {
    return this.#watch.state;
  }

  close(): void {
    const onClose = this.#onClose;
    if (onClose === undefined) return;
    this.#onClose = undefined;
    this.#pending?.cancel();
    onClose();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<OperationState, void, undefined> {
    let seen = -1;
    try {
      while (this.#onClose !== undefined) {
        const watch = this.#watch;
        if (watch.version !== seen) {
          seen = watch.version;
          const state = watch.state;
          yield state;
          if (state.done) return;
          continue;
        }
        const next = watch.nextChange();
        this.#pending = next;
        await next.promise;
        this.#pending = undefined;
      }
    } finally {
      this.close();
    }
  }
}
