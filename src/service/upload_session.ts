/**
 * One ByteStream upload in progress: request data is pushed (with back-pressure) into a stream that is
 * decompressed if needed, hashed and written to the CAS store with `{exact: size}`. The hash and size are
 * checked in the stream's flush, so a wrong blob fails the store write and nothing is stored.
 *
 * A session outlives a dropped connection for a while ("parked"), so a client may resume with
 * `write_offset = received`; when it expires it is aborted and the store discards the partial data.
 *
 * @example
 * ```ts
 * import { UploadSession } from "./upload_session.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const store = createMemoryStore();
 * const chunk = new TextEncoder().encode("hello");
 * const digest = digestOf(chunk);
 * const s = new UploadSession({ store, digest, compressor: "identity", what: "blob" });
 * await s.push(chunk);
 * await s.finish(); // stored
 * ```
 * @module
 */
import { type Digest, formatDigest } from "../digest/digest.ts";
import type { ResourceCompressor } from "../digest/resource_name.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { type IoThread, threadHashingStream } from "../util/io_thread.ts";
import { hashingStream } from "../util/streams.ts";
import { createZstdDecompressStream } from "./zstd_stream.ts";

/** Options of {@linkcode UploadSession}. */
export interface UploadSessionOptions {
  readonly store: StoreDriver;
  readonly digest: Digest;
  readonly compressor: ResourceCompressor;
  /** Resource name, for messages. */
  readonly what: string;
  /** Hash on this thread instead of inline (worth it for large uploads only). */
  readonly thread?: IoThread;
}

/** Chunks up to this size that view a buffer at least 4 times larger are copied before they are queued. */
const SMALL_CHUNK_COPY = 16 * 1024;

/** An upload being streamed into a store. */
export class UploadSession {
  /** Bytes accepted so far, as sent on the wire (compressed bytes for zstd uploads). */
  received = 0;
  /** True while a Write stream is feeding this session. */
  attached = false;
  readonly digest: Digest;
  readonly compressor: ResourceCompressor;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #wake: (() => void) | undefined;
  #failure: CairnError | undefined;
  #settled = false;
  #done: Promise<void>;
  #abort = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: UploadSessionOptions) {
    const { store, digest, compressor, what } = options;
    this.digest = digest;
    this.compressor = compressor;
    const source = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => this.#wakeUp(),
      cancel: (reason) => {
        this.#fail(reason);
      },
    }, { highWaterMark: 1 });
    let plain = source;
    if (compressor === "zstd") {
      plain = plain.pipeThrough(createZstdDecompressStream({ maxOutputBytes: digest.size }));
    }
    const verify = (hash: string, size: number) => {
      if (size !== digest.size) {
        throw new CairnError(
          Code.InvalidArgument,
          `Size mismatch for ${what}: expected ${digest.size} bytes, got ${size}`,
        );
      }
      if (hash !== digest.hash) {
        throw new CairnError(
          Code.InvalidArgument,
          `Hash mismatch for ${what}: the data hashes to ${hash}, not ${digest.hash}`,
        );
      }
    };
    const checked = plain.pipeThrough(
      options.thread !== undefined ? threadHashingStream(options.thread, verify) : hashingStream(verify),
    );
    this.#done = store.write(digest, checked, { exact: digest.size }, {
      signal: this.#abort.signal,
      verified: true,
      offload: true,
    });
    this.#done.then(
      () => {
        this.#settled = true;
        this.#wakeUp();
      },
      (err) => {
        this.#settled = true;
        this.#fail(err);
      },
    );
  }

  /** The error that ended the session, if any. */
  get failure(): CairnError | undefined {
    return this.#failure;
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #fail(reason: unknown): void {
    this.#failure ??= CairnError.from(reason, `Cannot store ${formatDigest(this.digest)}`);
    this.#wakeUp();
  }

  /** Pushes one chunk, waiting while the store is behind. Throws the pipeline's error if it failed. */
  async push(chunk: Uint8Array): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.compressor === "identity" && this.received + chunk.byteLength > this.digest.size) {
      const err = new CairnError(
        Code.InvalidArgument,
        `Too much data for ${formatDigest(this.digest)}: expected ${this.digest.size} bytes, got at least ${
          this.received + chunk.byteLength
        }`,
      );
      this.abort(err);
      throw err;
    }
    // A small chunk is usually a view into a much larger buffer (the socket read it came in): copied, so an
    // upload that sends 1 KiB and stalls holds 1 KiB, not the 64 KiB read buffer around it.
    if (chunk.byteLength <= SMALL_CHUNK_COPY && chunk.buffer.byteLength >= 4 * chunk.byteLength) {
      chunk = chunk.slice();
    }
    this.#controller.enqueue(chunk);
    this.received += chunk.byteLength;
    while ((this.#controller.desiredSize ?? 0) <= 0 && !this.#failure && !this.#settled) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    if (this.#failure) throw this.#failure;
  }

  /** Ends the data and waits until the store has committed (or refused) the blob. */
  async finish(): Promise<void> {
    if (this.#failure) throw this.#failure;
    this.#clearTimer();
    try {
      this.#controller.close();
    } catch { /* already closed */ }
    try {
      await this.#done;
    } catch (err) {
      throw this.#failure ?? CairnError.from(err);
    }
  }

  /** Aborts the upload: the store discards it. */
  abort(reason: unknown): void {
    this.#clearTimer();
    this.#fail(reason);
    try {
      this.#controller.error(this.#failure);
    } catch { /* already closed */ }
    this.#abort.abort(this.#failure);
    this.#done.catch(() => {});
  }

  /** Detaches the session and aborts it after `timeoutMs` unless a client resumes it. */
  park(timeoutMs: number, onExpire: () => void): void {
    this.attached = false;
    this.#clearTimer();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.abort(
        new CairnError(Code.Cancelled, `Upload of ${formatDigest(this.digest)} expired after a disconnect`),
      );
      onExpire();
    }, timeoutMs);
  }

  /** Re-attaches a parked session to a new Write stream. */
  resume(): void {
    this.#clearTimer();
    this.attached = true;
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
