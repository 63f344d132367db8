/**
 * zstd as Web Streams (for ByteStream `compressed-blobs/zstd`) and for small in-memory batches, on
 * `node:zlib`. Decompression is bounded: output beyond `maxOutputBytes` fails at once (no zip bombs).
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
import type { Transform } from "node:stream";
import { CairnError, Code } from "../util/error.ts";

/** Options of {@linkcode createZstdDecompressStream}. */
export interface ZstdDecompressOptions {
  /** Fail with INVALID_ARGUMENT as soon as the output exceeds this many bytes. */
  readonly maxOutputBytes?: number;
}

function wrap(
  z: Transform,
  what: string,
  maxOutputBytes = Number.POSITIVE_INFINITY,
): TransformStream<Uint8Array, Uint8Array> {
  let produced = 0;
  let failure: CairnError | undefined;
  let ended = false;
  /** Settles the pending write/flush promise when the zlib stream fails or closes. */
  let pending: ((err?: CairnError) => void) | undefined;
  const settle = (err?: CairnError) => {
    const p = pending;
    pending = undefined;
    p?.(err);
  };
  const fail = (err: unknown) => {
    failure ??= err instanceof CairnError
      ? err
      : new CairnError(Code.InvalidArgument, `Cannot ${what} zstd data: ${(err as Error).message}`, {
        cause: err,
      });
    settle(failure);
  };
  z.on("error", fail);
  z.on("end", () => {
    ended = true;
    settle(failure);
  });
  z.on(
    "close",
    () => settle(failure ?? (ended ? undefined : new CairnError(Code.Internal, `zstd ${what} closed early`))),
  );
  const wait = (start: (done: (err?: CairnError) => void) => void) =>
    new Promise<void>((resolve, reject) => {
      if (failure) return reject(failure);
      pending = (err) => (err ? reject(err) : resolve());
      start(settle);
    });
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      z.on("data", (chunk: Uint8Array) => {
        if (failure) return;
        produced += chunk.byteLength;
        if (produced > maxOutputBytes) {
          fail(
            new CairnError(
              Code.InvalidArgument,
              `Decompressed zstd data exceeds the expected ${maxOutputBytes} bytes`,
            ),
          );
          z.destroy();
          return;
        }
        try {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        } catch {
          z.destroy(); // the readable side is gone
        }
      });
    },
    transform(chunk) {
      return wait((done) => z.write(chunk, (err) => (err ? fail(err) : done(failure))));
    },
    flush() {
      return wait(() => z.end());
    },
    cancel() {
      z.destroy();
    },
  });
}

/** A TransformStream compressing to zstd. */
export function createZstdCompressStream(): TransformStream<Uint8Array, Uint8Array> {
  return wrap(zlib.createZstdCompress(), "compress");
}

/** A TransformStream decompressing zstd; INVALID_ARGUMENT on corrupt input or output past the bound. */
export function createZstdDecompressStream(
  options: ZstdDecompressOptions = {},
): TransformStream<Uint8Array, Uint8Array> {
  return wrap(zlib.createZstdDecompress(), "decompress", options.maxOutputBytes);
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
