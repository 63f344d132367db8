/**
 * Small Web Streams helpers shared by stores and services: size limits, byte ranges, hashing while
 * streaming, collecting small streams, and draining a stream chunk by chunk with abort support.
 *
 * @example
 * ```ts
 * import { bytesStream, collectBytes, sliceStream } from "./streams.ts";
 * const part = await collectBytes(bytesStream(new Uint8Array(10)).pipeThrough(sliceStream(2, 3)), 100);
 * console.log(part.byteLength); // 3
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { CairnError, Code } from "./error.ts";

/** Default chunk size when turning bytes or files into streams. */
export const DEFAULT_CHUNK_SIZE = 1 << 20;

/** A stream yielding `bytes` in chunks of at most `chunkSize` (zero-copy subarrays). */
export function bytesStream(bytes: Uint8Array, chunkSize = DEFAULT_CHUNK_SIZE): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pos >= bytes.byteLength) {
        controller.close();
        return;
      }
      const end = Math.min(bytes.byteLength, pos + chunkSize);
      controller.enqueue(bytes.subarray(pos, end));
      pos = end;
      if (pos >= bytes.byteLength) controller.close();
    },
  }, { highWaterMark: 0 });
}

/** Concatenates chunks into one array of exactly `total` bytes (computed when omitted). */
export function concatBytes(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  if (chunks.length === 1 && (total === undefined || chunks[0]!.byteLength === total)) return chunks[0]!;
  const size = total ?? chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(size);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/**
 * Reads a whole (small) stream into memory. More than `maxSize` bytes → RESOURCE_EXHAUSTED and the
 * stream is cancelled.
 */
export async function collectBytes(
  stream: ReadableStream<Uint8Array>,
  maxSize: number,
  what = "stream",
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxSize) {
        const err = new CairnError(
          Code.ResourceExhausted,
          `Cannot read ${what} into memory: more than ${maxSize} bytes`,
        );
        await reader.cancel(err).catch(() => {});
        throw err;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(chunks, total);
}

/**
 * Drains `stream`, calling `onChunk` for each chunk (awaited when it returns a promise). Aborting
 * `signal` cancels the stream and rejects with CANCELLED; an error from `onChunk` cancels the stream too.
 */
export async function forEachChunk(
  stream: ReadableStream<Uint8Array>,
  onChunk: (chunk: Uint8Array) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const reader = stream.getReader();
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal?.aborted) throw cancelled(signal);
    for (;;) {
      const { done, value } = await reader.read();
      if (signal?.aborted) throw cancelled(signal);
      if (done) break;
      const r = onChunk(value);
      if (r !== undefined) await r;
    }
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    throw err instanceof CairnError ? err : CairnError.from(err);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/** A CANCELLED error for an aborted signal (keeps a CairnError reason as is). */
export function cancelled(signal: AbortSignal, what = "Operation"): CairnError {
  const reason: unknown = signal.reason;
  if (reason instanceof CairnError) return reason;
  const msg = reason instanceof Error ? reason.message : String(reason ?? "aborted");
  return new CairnError(Code.Cancelled, `${what} cancelled: ${msg}`, { cause: reason });
}

/**
 * Counts an upload's bytes against its announced size, with the one wording of every size error: `add`
 * throws INVALID_ARGUMENT as soon as more than the limit have come, `finish` when an exact size was announced
 * and not reached.
 */
export class UploadBudget {
  /** Bytes counted so far. */
  count = 0;
  /** What the bytes are for, in messages. */
  readonly name: string;
  readonly exact: number | undefined;
  /** Most bytes allowed (`exact` when set). */
  readonly limit: number;

  constructor(size: { readonly exact: number } | { readonly max: number }, name = "upload") {
    this.name = name;
    this.exact = "exact" in size ? size.exact : undefined;
    this.limit = "exact" in size ? size.exact : size.max;
  }

  /** Counts `n` more bytes. */
  add(n: number): void {
    this.count += n;
    if (this.count > this.limit) {
      throw new CairnError(
        Code.InvalidArgument,
        this.exact !== undefined
          ? `Size mismatch for ${this.name}: expected ${this.exact} bytes, got at least ${this.count}`
          : `Too much data for ${this.name}: more than the limit of ${this.limit} bytes`,
      );
    }
  }

  /** At the end of the bytes. */
  finish(): void {
    if (this.exact !== undefined && this.count !== this.exact) {
      throw new CairnError(
        Code.InvalidArgument,
        `Size mismatch for ${this.name}: expected ${this.exact} bytes, got ${this.count}`,
      );
    }
  }
}

/**
 * Checks the byte count of a stream: errors with INVALID_ARGUMENT as soon as more than `limit` bytes pass,
 * and at the end when `exact` is set and fewer arrived.
 */
export function sizeCheckStream(
  size: { readonly exact: number } | { readonly max: number },
  what = "upload",
): TransformStream<Uint8Array, Uint8Array> {
  const budget = new UploadBudget(size, what);
  return new TransformStream({
    transform(chunk, controller) {
      budget.add(chunk.byteLength);
      controller.enqueue(chunk);
    },
    flush() {
      budget.finish();
    },
  });
}

/**
 * Passes through bytes `[offset, offset+length)` of the stream and then stops (cancelling the source).
 * `length` undefined → to the end.
 */
export function sliceStream(offset: number, length?: number): TransformStream<Uint8Array, Uint8Array> {
  let skip = offset;
  let left = length ?? Infinity;
  return new TransformStream({
    start(controller) {
      if (left <= 0) controller.terminate();
    },
    transform(chunk, controller) {
      if (left <= 0) return;
      let c = chunk;
      if (skip > 0) {
        if (c.byteLength <= skip) {
          skip -= c.byteLength;
          return;
        }
        c = c.subarray(skip);
        skip = 0;
      }
      if (c.byteLength > left) c = c.subarray(0, left);
      left -= c.byteLength;
      controller.enqueue(c);
      if (left <= 0) controller.terminate();
    },
  });
}

/** A pass-through that adds each chunk's length to `counter.bytes`. */
export function countingStream(counter: { bytes: number }): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, controller) {
      counter.bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
}

/** A pass-through hashing the bytes; `onDone(hexHash, size)` is called in flush (throw there to fail). */
export function hashingStream(
  onDone: (hash: string, size: number) => void,
  algorithm = "sha256",
): TransformStream<Uint8Array, Uint8Array> {
  const hasher = createHash(algorithm);
  let size = 0;
  return new TransformStream({
    transform(chunk, controller) {
      hasher.update(chunk);
      size += chunk.byteLength;
      controller.enqueue(chunk);
    },
    flush() {
      onDone(hasher.digest("hex"), size);
    },
  });
}

/**
 * Deterministic pseudo-random bytes produced as a stream (never held whole in memory): the same
 * `(size, seed)` always yields the same bytes. For tests, fixtures and benchmarks.
 *
 * With `reuseBuffers` = N, chunks come from a ring of N buffers, each handed out again N chunks later
 * (a benchmark source that allocates nothing; consumers must be done with a chunk by then).
 */
export function patternStream(
  size: number,
  seed = 1,
  chunkSize = DEFAULT_CHUNK_SIZE,
  reuseBuffers = 0,
): ReadableStream<Uint8Array> {
  const block = patternBlock(seed, chunkSize);
  const ring = Array.from({ length: reuseBuffers }, () => block.slice());
  let pos = 0;
  let index = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pos >= size) {
        controller.close();
        return;
      }
      const n = Math.min(chunkSize, size - pos);
      const chunk = reuseBuffers > 0 ? ring[index % reuseBuffers]!.subarray(0, n) : block.slice(0, n);
      // Make every chunk distinct so blobs do not repeat inside.
      const view = new DataView(chunk.buffer, chunk.byteOffset, n);
      for (let i = 0; i + 4 <= n && i < 64; i += 4) view.setUint32(i, (index * 2654435761 + i + seed) >>> 0);
      controller.enqueue(chunk);
      pos += n;
      index++;
      if (pos >= size) controller.close();
    },
  }, { highWaterMark: 0 });
}

/** The bytes of {@linkcode patternStream} (small sizes only). */
export function patternBytes(size: number, seed = 1, chunkSize = DEFAULT_CHUNK_SIZE): Promise<Uint8Array> {
  return collectBytes(patternStream(size, seed, chunkSize), size);
}

function patternBlock(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size + 4);
  const view = new DataView(out.buffer);
  let x = (seed * 0x9e3779b1) >>> 0 || 1;
  for (let i = 0; i + 4 <= out.byteLength; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    view.setUint32(i, x);
  }
  return out.subarray(0, size);
}

/**
 * Reads `stream` in chunks of `size` bytes (only the last one shorter), one chunk ahead of the consumer: the
 * next read is under way while the consumer handles the current chunk. A byte stream (a file) is read with a
 * BYOB reader straight into the chunk's buffer; with `reuse`, only two buffers alternate, a chunk's buffer
 * being filled again once the consumer asks for the chunk after next — so a consumer that sets `reuse` must
 * be done with a chunk when it asks for the next one. Other streams are cut into chunks of at most `size`
 * (no copy). Returning early cancels the stream.
 *
 * @example
 * ```ts
 * import { bytesStream, readChunks } from "./streams.ts";
 * for await (const chunk of readChunks(bytesStream(new Uint8Array(10)), 4, false)) {
 *   console.log(chunk.byteLength); // 4, 4, 2
 * }
 * ```
 */
export async function* readChunks(
  stream: ReadableStream<Uint8Array>,
  size: number,
  reuse: boolean,
): AsyncGenerator<Uint8Array> {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch {
    // not a byte stream
  }
  if (byob === undefined) {
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        for (let pos = 0; pos < value.byteLength; pos += size) yield value.subarray(pos, pos + size);
      }
    } finally {
      await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
  }
  const reader = byob;
  /** Fills `buffer` (transferred by each read) up to `size` bytes; undefined at the end of the stream. */
  const fill = async (buffer: ArrayBuffer): Promise<Uint8Array | undefined> => {
    let filled = 0;
    while (filled < size) {
      const { done, value } = await reader.read(new Uint8Array(buffer, filled, size - filled));
      if (value === undefined) break; // cancelled
      buffer = value.buffer as ArrayBuffer;
      filled += value.byteLength;
      if (done) break;
    }
    return filled === 0 ? undefined : new Uint8Array(buffer, 0, filled);
  };
  let pending: Promise<Uint8Array | undefined> | undefined = fill(new ArrayBuffer(size));
  let spare: ArrayBuffer | undefined;
  try {
    for (;;) {
      const chunk: Uint8Array | undefined = await pending;
      pending = undefined;
      if (chunk === undefined) return;
      if (chunk.byteLength === size) {
        pending = fill(spare ?? new ArrayBuffer(size));
        pending.catch(() => {}); // awaited on the next turn, or dropped with the stream
      }
      spare = undefined;
      yield chunk;
      if (pending === undefined) return;
      if (reuse) spare = chunk.buffer as ArrayBuffer;
    }
  } finally {
    await reader.cancel().catch(() => {});
    await pending?.catch(() => {});
    reader.releaseLock();
  }
}
