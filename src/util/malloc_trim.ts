/**
 * Gives memory the C allocator holds but no longer uses back to the system, now and then.
 *
 * Deno's native side (sockets, HTTP/2 frames, zstd, file I/O, ArrayBuffer contents) allocates through glibc's
 * `malloc`, which keeps freed memory inside its heaps for reuse and returns it only from the top of a heap.
 * After bursts of traffic (an attack, many concurrent uploads) the process's RSS thus stays at its high-water
 * mark although the memory is free: the soak measured 83 MiB of a 337 MiB server released by one
 * `malloc_trim(0)` after a full garbage collection. This module calls `malloc_trim(0)` through FFI every
 * `intervalMs`, on a blocking thread (`nonblocking`), so the event loop never waits for it.
 *
 * It does not force a garbage collection first (it used to): in Deno, `gc()` is V8's low-memory
 * notification, two or more compacting full collections in a row that stop the event loop for as long as
 * they take, 260–820 ms every 30 s in the soak on the loaded 2-core machine. V8's own collections, frequent
 * enough with the heap growth of `v8_heap.ts`, free the native memory of collected buffers between trims.
 *
 * It does nothing (and {@linkcode startMallocTrim} returns undefined) where it cannot work: not Linux, no
 * `--allow-ffi`, or a C library without `malloc_trim` (musl).
 *
 * @example
 * ```ts
 * import { startMallocTrim } from "./malloc_trim.ts";
 * const trimmer = startMallocTrim(30_000);
 * // … serve …
 * trimmer?.stop();
 * ```
 * @module
 */
/** A running trimmer. */
export interface MallocTrimmer {
  /** One trim now; resolves true when glibc returned memory to the system. */
  trimNow(): Promise<boolean>;
  /** Stops the timer and releases the library. */
  stop(): void;
}

/**
 * Every 10 s by default: what a burst (the soak's come every 30–40 s) leaves behind goes back within seconds
 * rather than holding RSS up until the next one; a trim runs on a blocking thread and takes milliseconds.
 */
export const DEFAULT_MALLOC_TRIM_INTERVAL_MS = 10_000;

/** Starts trimming every `intervalMs`; undefined where glibc's `malloc_trim` is not available. */
export function startMallocTrim(intervalMs = DEFAULT_MALLOC_TRIM_INTERVAL_MS): MallocTrimmer | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  let lib;
  try {
    lib = Deno.dlopen(
      "libc.so.6",
      {
        malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
      } as const,
    );
  } catch {
    return undefined; // not glibc
  }
  const opened = lib;
  let running: Promise<boolean> | undefined;
  let stopped = false;
  const trimNow = (): Promise<boolean> => {
    if (stopped) return Promise.resolve(false);
    if (running === undefined) {
      running = opened.symbols.malloc_trim(0n).then((r) => r === 1).finally(() => running = undefined);
    }
    return running;
  };
  const timer = setInterval(() => void trimNow().catch(() => {}), intervalMs);
  Deno.unrefTimer(timer);
  return {
    trimNow,
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      // A trim under way still uses the library: close it once that one is done.
      void (running ?? Promise.resolve(false)).catch(() => false).then(() => opened.close());
    },
  };
}
