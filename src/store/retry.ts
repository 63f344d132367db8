/**
 * NativeLink's `retry` object (`max_retries`, `delay` seconds, `jitter` fraction, `retry_on_errors`) for the
 * stores that talk to a backend service (`redis_store`, `experimental_cloud_object_store`): exponential
 * back-off `2^attempt * delay`, spread by ±`jitter / 2`, on transient gRPC codes only.
 *
 * @example
 * ```ts
 * import { Retrier } from "./retry.ts";
 * const retrier = Retrier.from({ max_retries: 3, delay: 0.1, jitter: 0.5 });
 * let calls = 0;
 * const value = await retrier.run(() => Promise.resolve(++calls)); // 1: no error, no retry
 * ```
 * @module
 */
import { CairnError, Code, codeName } from "../util/error.ts";
import type { SpecFields, StoreBuildContext } from "./registry.ts";

/** The codes retried when `retry_on_errors` is not given (NativeLink's defaults). */
export const DEFAULT_RETRY_CODES: readonly Code[] = [
  Code.Unknown,
  Code.Cancelled,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
];

/** A parsed `retry` object. */
export interface RetryPolicy {
  readonly maxRetries: number;
  /** Base delay in seconds. */
  readonly delay: number;
  readonly jitter: number;
  readonly codes: ReadonlySet<Code>;
}

/** No retries. */
export const NO_RETRY: RetryPolicy = {
  maxRetries: 0,
  delay: 0,
  jitter: 0,
  codes: new Set(DEFAULT_RETRY_CODES),
};

/** Reads a store's `retry` field (absent: no retries). */
export function retryPolicyFrom(fields: SpecFields, ctx: StoreBuildContext): RetryPolicy {
  const r = ctx.object(fields, "retry");
  if (!r) return NO_RETRY;
  const known = ["max_retries", "delay", "jitter", "retry_on_errors"];
  for (const k of Object.keys(r)) {
    if (!known.includes(k)) {
      throw ctx.error(`unknown retry field "${k}"; valid fields are ${known.join(", ")}`);
    }
  }
  const list = r["retry_on_errors"];
  let codes: Code[] = [...DEFAULT_RETRY_CODES];
  if (Array.isArray(list) && list.length > 0) {
    codes = list.map((name) => {
      const c = parseCodeName(String(name));
      if (c === undefined) throw ctx.error(`retry.retry_on_errors: unknown code "${String(name)}"`);
      return c;
    });
  }
  return {
    maxRetries: ctx.number(r, "max_retries", 0),
    delay: ctx.number(r, "delay", 0),
    jitter: ctx.number(r, "jitter", 0),
    codes: new Set(codes),
  };
}

/** A gRPC code from its name as configs spell it (`UNAVAILABLE`, `DeadlineExceeded`, `data_loss`, `Canceled`). */
export function parseCodeName(name: string): Code | undefined {
  const wanted = name.replace(/[_\s]/g, "").toLowerCase();
  for (let c = 0; c <= 16; c++) {
    if (codeName(c as Code).replace(/_/g, "").toLowerCase() === wanted) return c as Code;
  }
  if (wanted === "canceled") return Code.Cancelled;
  return undefined;
}

/** Runs operations under a {@linkcode RetryPolicy}. */
export class Retrier {
  readonly #policy: RetryPolicy;

  constructor(policy: RetryPolicy) {
    this.#policy = policy;
  }

  /** A retrier from a raw `retry` object (tests, examples). */
  static from(r: { max_retries?: number; delay?: number; jitter?: number }): Retrier {
    return new Retrier({
      maxRetries: r.max_retries ?? 0,
      delay: r.delay ?? 0,
      jitter: r.jitter ?? 0,
      codes: new Set(DEFAULT_RETRY_CODES),
    });
  }

  /** Retries allowed after the first attempt (0: `run` is a plain call). */
  get retries(): number {
    return this.#policy.maxRetries;
  }

  /** The milliseconds to wait before retry number `attempt + 1`. */
  backoffMs(attempt: number): number {
    const base = 2 ** attempt * this.#policy.delay * 1000;
    return base * (1 - this.#policy.jitter / 2 + Math.random() * this.#policy.jitter);
  }

  /**
   * Whether a failure `err` of attempt number `attempt` (0: the first) is tried again: a
   * {@linkcode CairnError} of a retried code (never NOT_FOUND), retries left, and `signal` not aborted.
   */
  retriable(err: unknown, attempt: number, signal?: AbortSignal): boolean {
    return err instanceof CairnError && err.code !== Code.NotFound && this.#policy.codes.has(err.code) &&
      attempt < this.#policy.maxRetries && !signal?.aborted;
  }

  /**
   * Runs `fn`; on a {@linkcode CairnError} of a retried code, waits and runs it again, up to `max_retries`
   * times. NOT_FOUND is never retried. An aborted `signal` stops the retries.
   */
  async run<T>(fn: (attempt: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!this.retriable(err, attempt, signal)) throw err;
        await sleep(this.backoffMs(attempt), signal);
      }
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
