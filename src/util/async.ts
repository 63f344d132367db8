/**
 * Small async building blocks, written once: {@linkcode delay} (a timer an abort signal ends early),
 * {@linkcode Semaphore} (at most N holders, handed over in arrival order) and {@linkcode mapLimit} (runs a
 * function over a list with at most N calls at once).
 *
 * @example
 * ```ts
 * import { delay, mapLimit, Semaphore } from "./async.ts";
 * await delay(25, AbortSignal.timeout(1000));
 * const writes = new Semaphore(4);
 * const release = await writes.acquire();
 * try {
 *   await delay(1);
 * } finally {
 *   release();
 * }
 * const seen: number[] = [];
 * await mapLimit([1, 2, 3], 2, (n) => Promise.resolve(seen.push(n))); // at most 2 calls at once
 * ```
 * @module
 */

/** Resolves after `ms` milliseconds, or at once when `signal` aborts (never rejects). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * At most `limit` holders at once (`limit` ≤ 0: no limit). A release hands its slot straight to the longest
 * waiter, so the count never exceeds the limit.
 */
export class Semaphore {
  readonly #limit: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Holders now. */
  get active(): number {
    return this.#active;
  }

  /** Waits for a slot; the returned function releases it (calling it again does nothing). */
  async acquire(): Promise<() => void> {
    if (this.#limit <= 0 || this.#active < this.#limit) this.#active++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    };
  }
}

/**
 * Calls `fn` on every item with at most `limit` calls running at once, in list order, and resolves with the
 * results in list order. Rejects with the first
 * failure (calls already started finish; the remaining items are still taken by the running lanes).
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(Math.max(limit, 1), items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  }));
  return out;
}
