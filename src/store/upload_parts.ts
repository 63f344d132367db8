/**
 * Reading an upload into fixed-size parts, for stores that send a value in pieces (Redis chunks, S3 multipart
 * parts): the announced-size and cancellation checks, and the part buffer that grows up to the part size, kept
 * in one place. A value of at most one part is never handed out as a part: the caller gets it back whole and
 * can store it in one request.
 *
 * @example
 * ```ts
 * import { readInParts } from "./upload_parts.ts";
 * const data = new Blob([new Uint8Array(10)]).stream();
 * const sent: number[] = [];
 * const { rest, parts, total } = await readInParts(data, {
 *   label: "blob", expected: 10, limit: 10, partSize: 4, signal: undefined,
 *   cancelled: () => new Error("cancelled"), alloc: (n) => new Uint8Array(n),
 *   onPart: async (part) => { sent.push(part.byteLength); },
 * });
 * console.log(sent, rest.byteLength, parts, total); // [4, 4] 2 2 10
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";

/** How {@linkcode readInParts} and {@linkcode readToEnd} read an upload. */
export interface UploadReadOptions {
  /** The key as messages name it. */
  readonly label: string;
  /** The exact size announced, if any (checked at the end). */
  readonly expected: number | undefined;
  /** The most bytes the upload may carry (checked as bytes arrive). */
  readonly limit: number;
  readonly signal: AbortSignal | undefined;
  /** The error of a cancelled write. */
  readonly cancelled: () => Error;
  /** Called after each chunk read; throws the failure of a part sent earlier, if any. */
  readonly check?: () => void;
}

/** Options of {@linkcode readInParts}. */
export interface PartReadOptions<B extends Uint8Array> extends UploadReadOptions {
  /** Bytes per part. */
  readonly partSize: number;
  /** Allocates a part buffer (a store may want a `Buffer`). */
  readonly alloc: (bytes: number) => B;
  /** Takes each full part, once more bytes follow it. */
  readonly onPart: (part: B) => Promise<void>;
}

/** What {@linkcode readInParts} leaves to its caller. */
export interface PartReadResult<B extends Uint8Array> {
  /** The bytes after the last part handed out (the whole value when `parts` is 0). */
  readonly rest: B;
  /** How many parts went to `onPart`. */
  readonly parts: number;
  readonly total: number;
}

/**
 * Reads `data` to its end in parts of `partSize`, checking the announced size and cancellation. On failure the
 * source is cancelled and the error rethrown.
 */
export async function readInParts<B extends Uint8Array>(
  data: ReadableStream<Uint8Array>,
  o: PartReadOptions<B>,
): Promise<PartReadResult<B>> {
  let part = o.alloc(Math.min(o.partSize, Math.max(1, o.expected ?? o.partSize)));
  let fill = 0;
  let parts = 0;
  const total = await readChunks(data, o, async (value) => {
    let off = 0;
    while (off < value.byteLength) {
      if (fill === part.byteLength) {
        if (part.byteLength < o.partSize) {
          const bigger = o.alloc(Math.min(o.partSize, part.byteLength * 2));
          bigger.set(part.subarray(0, fill));
          part = bigger;
        } else {
          // A full part goes out only once more bytes follow: a value of one part stays whole.
          await o.onPart(part);
          parts++;
          part = o.alloc(o.partSize);
          fill = 0;
        }
      }
      const take = Math.min(part.byteLength - fill, value.byteLength - off);
      part.set(value.subarray(off, off + take), fill);
      fill += take;
      off += take;
    }
  });
  return { rest: part.subarray(0, fill) as B, parts, total };
}

/** Reads `data` to its end without keeping its bytes, checking the announced size and cancellation. */
export function readToEnd(data: ReadableStream<Uint8Array>, o: UploadReadOptions): Promise<number> {
  return readChunks(data, o, () => Promise.resolve());
}

async function readChunks(
  data: ReadableStream<Uint8Array>,
  o: UploadReadOptions,
  onChunk: (chunk: Uint8Array) => Promise<void>,
): Promise<number> {
  const reader = data.getReader();
  let total = 0;
  try {
    for (;;) {
      if (o.signal?.aborted) throw o.cancelled();
      const { done, value } = await readOrAbort(reader, o.signal, o.cancelled);
      if (done) break;
      o.check?.();
      total += value.byteLength;
      if (total > o.limit) throw sizeOver(o.label, o.limit);
      await onChunk(value);
    }
    if (o.signal?.aborted) throw o.cancelled();
    if (o.expected !== undefined && total !== o.expected) throw sizeMismatch(o.label, o.expected, total);
    return total;
  } catch (err) {
    reader.cancel(err).catch(() => {});
    throw err;
  } finally {
    reader.releaseLock();
  }
}

/** `reader.read()`, rejected as soon as `signal` aborts (a stalled source must not hold a cancelled write). */
export function readOrAbort(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  signal: AbortSignal | undefined,
  abortError: () => Error,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  if (!signal) return reader.read();
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError());
    signal.addEventListener("abort", onAbort, { once: true });
    reader.read().then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** INVALID_ARGUMENT: the upload carries more bytes than announced. */
export function sizeOver(label: string, limit: number): CairnError {
  return new CairnError(
    Code.InvalidArgument,
    `Size mismatch for ${label}: upload has more than the ${limit} bytes announced`,
  );
}

/** INVALID_ARGUMENT: the upload ended with another size than announced. */
export function sizeMismatch(label: string, expected: number, total: number): CairnError {
  return new CairnError(
    Code.InvalidArgument,
    `Size mismatch for ${label}: expected ${expected} bytes, got ${total}`,
  );
}

/**
 * Runs a store's write, turning any failure into a `CairnError` (a failing source — the client went away — is
 * an error of this write, with its cause).
 */
export async function asWriteError<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    throw CairnError.from(err);
  }
}
