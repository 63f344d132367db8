/**
 * Progress of long work (the filesystem store's index rebuild at start): a task reports counts, and
 * `createProgress` prints a line with the count, the rate and an ETA at most every `everyMs`, and keeps the
 * current state for the status page (`currentProgress()`).
 *
 * @example
 * ```ts
 * import { createProgress, currentProgress } from "./progress.ts";
 * const p = createProgress("Indexing store CAS", { total: 1000, log: () => {} });
 * p.update(250);
 * console.log(currentProgress()[0]?.done); // 250
 * p.finish();
 * ```
 * @module
 */

/** The state of one piece of long work. */
export interface Progress {
  readonly what: string;
  readonly done: number;
  /** 0 when unknown. */
  readonly total: number;
  /** Seconds left at the current rate, when it can be told. */
  readonly etaSeconds: number | null;
}

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** Expected count (0 or absent: unknown). */
  readonly total?: number;
  /** Where lines go (default: console.log). */
  readonly log?: (line: string) => void;
  /** Least time between two printed lines (default 2000 ms). */
  readonly everyMs?: number;
}

/** A reporter for one piece of long work. */
export interface ProgressReporter {
  /** Sets the count done so far; prints a line when `everyMs` has passed since the last one. */
  update(done: number, total?: number): void;
  /** Ends the work, printing a last line with the count and the time taken. */
  finish(): void;
}

const active = new Set<{ state: Progress }>();

/** Work in progress now, oldest first. */
export function currentProgress(): Progress[] {
  return [...active].map((a) => a.state);
}

/** Starts reporting on `what`. */
export function createProgress(what: string, options: ProgressOptions = {}): ProgressReporter {
  const log = options.log ?? ((line: string) => console.log(line));
  const everyMs = options.everyMs ?? 2000;
  const started = performance.now();
  let lastLine = started;
  let total = options.total ?? 0;
  const slot = { state: { what, done: 0, total, etaSeconds: null } as Progress };
  active.add(slot);
  const fmt = (n: number) => n.toLocaleString("en-US");
  return {
    update(done, newTotal) {
      if (newTotal !== undefined) total = newTotal;
      const now = performance.now();
      const secs = (now - started) / 1000;
      const rate = secs > 0 ? done / secs : 0;
      const eta = total > done && rate > 0 ? (total - done) / rate : null;
      slot.state = { what, done, total, etaSeconds: eta === null ? null : Math.round(eta) };
      if (now - lastLine < everyMs) return;
      lastLine = now;
      log(
        `cairn: ${what}: ${fmt(done)}${total ? ` of ${fmt(total)}` : ""} (${fmt(Math.round(rate))}/s${
          eta !== null ? `, about ${Math.ceil(eta)} s left` : ""
        })`,
      );
    },
    finish() {
      if (!active.delete(slot)) return;
      const secs = (performance.now() - started) / 1000;
      if (secs * 1000 >= everyMs) {
        log(`cairn: ${what}: done, ${fmt(slot.state.done)} in ${secs.toFixed(1)} s`);
      }
    },
  };
}
