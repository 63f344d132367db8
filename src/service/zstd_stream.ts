/**
 * zstd as Web Streams (for ByteStream `compressed-blobs/zstd`) and for small in-memory batches, on
 * `node:zlib`. Decompression is bounded: output is inflated only as fast as the consumer reads it, and output
 * beyond `maxOutputBytes` fails at once (no zip bombs).
 *
 * @example
 * ```ts
 * import { createZstdDecompressStream, zstdCompress } from "./zstd_stream.ts";
 * const bytes = new TextEncoder().encode("hello hello hello");
 * const digest = { size: bytes.byteLength };
 * const compressed = ReadableStream.from([zstdCompress(bytes)]);
 * const plain = compressed.pipeThrough(createZstdDecompressStream({ maxOutputBytes: digest.size }));
 * console.log(await new Response(plain).text()); // hello hello hello
 * ```
 * @module
 */
import zlib from "node:zlib";
import { setImmediate } from "node:timers";
import type { Transform } from "node:stream";
import { CairnError, Code } from "../util/error.ts";

/** Longest run of (de)compression without giving way to the event loop. */
const YIELD_EVERY_MS = 1;

/** Size of each decompressed chunk (zlib's default is 16 KiB: more, smaller hops through the pipeline). */
const OUTPUT_CHUNK_BYTES = 256 * 1024;

/** Options of {@linkcode createZstdDecompressStream}. */
export interface ZstdDecompressOptions {
  /** Fail with INVALID_ARGUMENT as soon as the output exceeds this many bytes. */
  readonly maxOutputBytes?: number;
}

/**
 * Wraps a `node:zlib` transform as a Web Streams pair with back-pressure end to end: the zlib stream runs in
 * paused mode and its output is read only when the consumer pulls, so zlib stops inflating once its small
 * readable buffer is full and the write of the next compressed chunk waits. A highly compressed chunk thus
 * never turns into more than a buffer's worth of output in memory; output beyond `maxOutputBytes` fails at
 * once and destroys the zlib stream.
 */
function wrap(
  z: Transform,
  what: string,
  maxOutputBytes = Number.POSITIVE_INFINITY,
): ReadableWritablePair<Uint8Array, Uint8Array> {
  let produced = 0;
  let failure: CairnError | undefined;
  let ended = false;
  let readableController: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** Wakes whoever waits for zlib (a pull waiting for output, a write or close waiting for zlib). */
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  const fail = (err: unknown) => {
    failure ??= err instanceof CairnError
      ? err
      : new CairnError(Code.InvalidArgument, `Cannot ${what} zstd data: ${(err as Error).message}`, {
        cause: err,
      });
    try {
      readableController?.error(failure);
    } catch { /* already closed */ }
    z.destroy();
    wake();
  };
  z.on("error", fail);
  z.on("readable", wake);
  z.on("end", () => {
    ended = true;
    wake();
  });
  z.on("close", () => {
    if (!ended) fail(new CairnError(Code.Internal, `zstd ${what} closed early`));
    wake();
  });
  /** Waits until `ready()` holds (checked after each zlib event); rejects with the stream's failure. */
  const until = async (ready: () => boolean): Promise<void> => {
    while (!failure && !ready()) {
      await new Promise<void>((resolve) => {
        const w = () => {
          waiters.delete(w);
          resolve();
        };
        waiters.add(w);
      });
    }
    if (failure) throw failure;
  };
  let lastYield = performance.now();
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      readableController = controller;
    },
    async pull(controller) {
      // zlib and the stream machinery settle through microtasks only: a long inflate would starve the event
      // loop (other clients' I/O). Give way to it every few milliseconds.
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      }
      for (;;) {
        if (failure) throw failure;
        const chunk = z.read() as Uint8Array | null;
        if (chunk !== null) {
          produced += chunk.byteLength;
          if (produced > maxOutputBytes) {
            const err = new CairnError(
              Code.InvalidArgument,
              `Decompressed zstd data exceeds the expected ${maxOutputBytes} bytes`,
            );
            fail(err);
            throw err;
          }
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          return;
        }
        if (ended) {
          controller.close();
          return;
        }
        let event = false;
        const w = () => {
          event = true;
        };
        waiters.add(w);
        // zlib emits "readable" once output is buffered (or "end"); check again after any event.
        await until(() => event);
        waiters.delete(w);
      }
    },
    cancel() {
      failure ??= new CairnError(Code.Cancelled, `zstd ${what} cancelled`);
      z.destroy();
      wake();
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (failure) throw failure;
      let written = false;
      z.write(chunk, (err) => {
        if (err) fail(err);
        written = true;
        wake();
      });
      // The callback comes once zlib has consumed the chunk, i.e. once the reader made room for its output.
      await until(() => written);
    },
    async close() {
      if (failure) throw failure;
      let finished = false;
      z.end(() => {
        finished = true;
        wake();
      });
      await until(() => finished || ended);
    },
    abort(reason) {
      fail(reason ?? new CairnError(Code.Cancelled, `zstd ${what} aborted`));
    },
  });
  return { readable, writable };
}

/** A stream pair compressing to zstd (use with `pipeThrough`). */
export function createZstdCompressStream(): ReadableWritablePair<Uint8Array, Uint8Array> {
  return wrap(zlib.createZstdCompress(), "compress");
}

/**
 * A stream pair decompressing zstd (use with `pipeThrough`); INVALID_ARGUMENT on corrupt input or output past
 * the bound. Output is produced only as fast as it is read (bounded memory whatever the compression ratio).
 */
export function createZstdDecompressStream(
  options: ZstdDecompressOptions = {},
): ReadableWritablePair<Uint8Array, Uint8Array> {
  return wrap(
    zlib.createZstdDecompress({ chunkSize: OUTPUT_CHUNK_BYTES }),
    "decompress",
    options.maxOutputBytes,
  );
}

/** Compresses a small in-memory blob. */
export function zstdCompress(bytes: Uint8Array): Uint8Array {
  const out = zlib.zstdCompressSync(bytes);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Decompresses a small in-memory blob of at most `maxOutputBytes`; INVALID_ARGUMENT otherwise. */
export function zstdDecompress(bytes: Uint8Array, maxOutputBytes: number): Uint8Array {
  try {
    const out = zlib.zstdDecompressSync(bytes, { maxOutputLength: Math.max(1, maxOutputBytes) });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (err) {
    throw new CairnError(Code.InvalidArgument, `Cannot decompress zstd data: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
