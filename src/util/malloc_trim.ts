/**
 * Gives memory the C allocator holds but no longer uses back to the system, now and then.
 *
 * Deno's native side (sockets, HTTP/2 frames, zstd, file I/O, ArrayBuffer contents) allocates through glibc's
 * `malloc`, which keeps freed memory inside its heaps for reuse and returns it only from the top of a heap.
 * After bursts of traffic (an attack, many concurrent uploads) the process's RSS thus stays at its high-water
 * mark although the memory is free: the soak measured 83 MiB of a 337 MiB server released by one
 * `malloc_trim(0)` after a full garbage collection. This module calls `malloc_trim(0)` through FFI every
 * `intervalMs`, on a blocking thread (`nonblocking`), so the event loop never waits for it, right after a full
 * garbage collection (which frees the native memory of collected buffers first).
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
import v8 from "node:v8";
import vm from "node:vm";

/** A running trimmer. */
export interface MallocTrimmer {
  /** One trim now; resolves true when glibc returned memory to the system. */
  trimNow(): Promise<boolean>;
  /** Stops the timer and releases the library. */
  stop(): void;
}

/** Every 30 s by default: the soak's bursts come every 30 s; a trim of a few hundred MiB takes milliseconds. */
export const DEFAULT_MALLOC_TRIM_INTERVAL_MS = 30_000;

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
  const gc = fullGc();
  const trimNow = (): Promise<boolean> => {
    if (stopped) return Promise.resolve(false);
    if (running === undefined) {
      // Native memory is freed only once V8 collects the JavaScript objects holding it (buffers, streams),
      // which it does lazily: a full collection first lets the trim return what the last burst left behind.
      gc?.();
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

/**
 * V8's full garbage collection as a function (`--expose-gc` set at run time through `node:v8`), or undefined
 * where that is refused. A full collection of Cairn's heap (tens of MiB) takes milliseconds.
 */
function fullGc(): (() => void) | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    return typeof gc === "function" ? () => (gc as () => void)() : undefined;
  } catch {
    return undefined;
  }
}
