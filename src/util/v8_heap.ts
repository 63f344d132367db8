/**
 * The V8 setting Cairn's server runs with, so that its heap stays near what it really holds under load.
 *
 * Most of what the server allocates under load (messages, HTTP/2 stream state, promises of calls in flight)
 * lives long enough to be promoted to V8's old generation and dies there. After each full collection V8 lets
 * the old generation grow up to 4× its live size before it collects again, so under the soak's traffic a
 * server holding 30–45 MiB kept a V8 heap of 180–200 MiB (plus the buffers that garbage pins, `external`
 * memory), and never gave it back while busy. With a growing factor of 1.3 (`--heap-growing-percent=30`)
 * the heap stays at 80–120 MiB: full collections come more often, each no longer (V8 marks incrementally
 * and concurrently, and what it marks is the live part).
 *
 * V8 reads its flags once, at start (`v8.setFlagsFromString` later has no effect on this one), so the flag
 * is on the command line of every way the server is started: `deno task start` (`deno.json`), the test
 * fixtures that run `main.ts` (`tests/fixtures/cairn_process.ts`, `tests/fixtures/exec_fixtures.ts`), and the
 * README's command lines. `DENO_V8_FLAGS=--heap-growing-percent=30` does the same for other launchers.
 *
 * @example
 * ```ts
 * import { V8_HEAP_FLAG } from "./v8_heap.ts";
 * const cmd = new Deno.Command(Deno.execPath(), { args: ["run", V8_HEAP_FLAG, "-A", "main.ts", "cfg.json5"] });
 * console.log(V8_HEAP_FLAG); // --v8-flags=--heap-growing-percent=30
 * void cmd;
 * ```
 * @module
 */

/** The `deno run` flag the server is started with (the same text as in `deno.json`'s `start` task). */
export const V8_HEAP_FLAG = "--v8-flags=--heap-growing-percent=30";
