/**
 * A worker thread for the CPU-heavy side of large transfers: writing files and hashing. Filling the page
 * cache costs the writing thread about as much CPU as receiving the bytes did (on a VM, fresh pages fault
 * in from the host), and SHA-256 costs about a third of that again; handing both to this thread lets the
 * main thread go on receiving. Bytes are copied into pooled 1 MiB buffers that are transferred to the
 * worker and back (no allocation per chunk, no copy in the message); at most `depth` buffers per file or
 * hash are out at once, which is the back-pressure.
 *
 * @example
 * ```ts
 * import { IoThread } from "./io_thread.ts";
 * const dir = await Deno.makeTempDir();
 * const thread = new IoThread();
 * const sink = await thread.open(`${dir}/blob.tmp`, 0o644);
 * await sink.push(new Uint8Array(3 << 20));
 * await sink.finish(new Date()); // sets the mtime, closes; ENOSPC becomes RESOURCE_EXHAUSTED
 * const hasher = await thread.hasher();
 * await hasher.push(new Uint8Array(3 << 20));
 * console.log(await hasher.digest()); // SHA-256, hex
 * thread.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @module
 */
import { CairnError, Code } from "./error.ts";

/** Options of {@linkcode IoThread}. */
export interface IoThreadOptions {
  /** Bytes per buffer (default 1 MiB). */
  readonly bufferSize?: number;
  /** Buffers one file or hash may have at the worker at once (default 4). */
  readonly depth?: number;
  /** Free buffers kept for reuse (default 8). */
  readonly poolSize?: number;
}

interface Waiter {
  resolve(hash: string | undefined): void;
  reject(err: unknown): void;
}

type Reply =
  | { readonly t: "done"; readonly seq: number; readonly hash?: string }
  | { readonly t: "returned"; readonly id: number; readonly buf: ArrayBuffer }
  | { readonly t: "error"; readonly seq: number; readonly code: string; readonly message: string };

/** A worker thread that writes files and hashes; started on first use, stopped by `close`. */
export class IoThread {
  readonly bufferSize: number;
  readonly depth: number;
  readonly #poolSize: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #calls = new Map<number, Waiter>();
  readonly #channels = new Map<number, Channel>();
  #worker: Worker | undefined;
  #nextId = 1;
  #nextSeq = 1;

  constructor(options: IoThreadOptions = {}) {
    this.bufferSize = options.bufferSize ?? 1 << 20;
    this.depth = options.depth ?? 4;
    this.#poolSize = options.poolSize ?? 8;
  }

  /** Creates `path` (it must not exist) with `mode`; resolves once it is open. */
  async open(path: string, mode: number): Promise<FileSink> {
    const sink = new FileSink(this, this.#nextId++);
    await this.#register(sink, { t: "open", path, mode });
    return sink;
  }

  /** Starts a SHA-256 computed on the thread. */
  async hasher(): Promise<ThreadHasher> {
    const hasher = new ThreadHasher(this, this.#nextId++);
    await this.#register(hasher, { t: "hash" });
    return hasher;
  }

  /** Stops the worker; files still open are closed by the thread's end and their sinks fail. */
  close(): void {
    const worker = this.#worker;
    this.#worker = undefined;
    worker?.terminate();
    this.#failAll(new CairnError(Code.Unavailable, "The I/O thread was stopped"));
    this.#free.length = 0;
  }

  /** @internal A pooled buffer (fresh when the pool is empty). */
  take(): ArrayBuffer {
    return this.#free.pop() ?? new ArrayBuffer(this.bufferSize);
  }

  /** @internal Sends a request that the worker answers with `done` or `error`. */
  call(message: Record<string, unknown> & { id: number }): Promise<string | undefined> {
    const seq = this.#nextSeq++;
    return new Promise<string | undefined>((resolve, reject) => {
      this.#calls.set(seq, { resolve, reject });
      try {
        this.#ensure().postMessage({ ...message, seq });
      } catch (err) {
        this.#calls.delete(seq);
        reject(err);
      }
    });
  }

  /** @internal Hands a buffer to the worker (transferred). */
  send(t: "write" | "update", id: number, buf: ArrayBuffer, len: number): void {
    this.#ensure().postMessage({ t, id, buf, len }, [buf]);
  }

  /** @internal Forgets a finished file or hash. */
  forget(id: number): void {
    this.#channels.delete(id);
  }

  async #register(channel: Channel, message: Record<string, unknown>): Promise<void> {
    this.#channels.set(channel.id, channel);
    try {
      await this.call({ ...message, id: channel.id });
    } catch (err) {
      this.#channels.delete(channel.id);
      throw err;
    }
  }

  #ensure(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(new URL("./_io_worker.ts", import.meta.url).href, { type: "module" });
    worker.onmessage = (e: MessageEvent<Reply>) => this.#reply(e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      worker.terminate();
      this.#failAll(new CairnError(Code.Internal, `The I/O thread failed: ${e.message}`));
    };
    this.#worker = worker;
    return worker;
  }

  #reply(m: Reply): void {
    if (m.t === "returned") {
      if (this.#free.length < this.#poolSize && m.buf.byteLength === this.bufferSize) this.#free.push(m.buf);
      this.#channels.get(m.id)?.returned();
      return;
    }
    const waiter = this.#calls.get(m.seq);
    if (waiter === undefined) return;
    this.#calls.delete(m.seq);
    if (m.t === "done") waiter.resolve(m.hash);
    else waiter.reject(CairnError.from({ code: m.code, message: m.message }));
  }

  #failAll(err: CairnError): void {
    const calls = [...this.#calls.values()];
    this.#calls.clear();
    for (const w of calls) w.reject(err);
    const channels = [...this.#channels.values()];
    this.#channels.clear();
    for (const c of channels) c.fail(err);
  }
}

/** Bytes flowing to the thread in pooled buffers, at most `depth` out at once. */
abstract class Channel {
  readonly id: number;
  protected readonly thread: IoThread;
  #kind: "write" | "update";
  #current: Uint8Array | undefined;
  #used = 0;
  #out = 0;
  #wake: (() => void) | undefined;
  #error: unknown;
  #ended = false;

  constructor(thread: IoThread, id: number, kind: "write" | "update") {
    this.thread = thread;
    this.id = id;
    this.#kind = kind;
  }

  /** Copies `chunk` into buffers, sending each full one; waits while `depth` buffers are out. */
  async push(chunk: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < chunk.byteLength) {
      if (this.#error !== undefined) throw this.#error;
      const buf = this.#current ??= new Uint8Array(this.thread.take());
      const k = Math.min(chunk.byteLength - pos, buf.byteLength - this.#used);
      buf.set(pos === 0 && k === chunk.byteLength ? chunk : chunk.subarray(pos, pos + k), this.#used);
      this.#used += k;
      pos += k;
      if (this.#used === buf.byteLength) await this.flush();
    }
  }

  /** @internal A buffer came back from the worker. */
  returned(): void {
    this.#out--;
    this.#wakeUp();
  }

  /** @internal The thread stopped. */
  fail(err: unknown): void {
    this.#error ??= err;
    this.#wakeUp();
  }

  /** Sends the partly filled buffer, if any; throws the thread's failure. */
  protected async flush(): Promise<void> {
    const buf = this.#current;
    if (buf !== undefined && this.#used > 0) {
      while (this.#out >= this.thread.depth && this.#error === undefined) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
      if (this.#error !== undefined) throw this.#error;
      const len = this.#used;
      this.#current = undefined;
      this.#used = 0;
      this.#out++;
      this.thread.send(this.#kind, this.id, buf.buffer as ArrayBuffer, len);
    }
    if (this.#error !== undefined) throw this.#error;
  }

  /** Sends what is buffered, then the request that ends the file or hash (`close`, `digest`). */
  protected async end(message: Record<string, unknown>): Promise<string | undefined> {
    await this.flush();
    this.#ended = true;
    try {
      return await this.thread.call({ ...message, id: this.id });
    } finally {
      this.thread.forget(this.id);
    }
  }

  /** Drops what is buffered and ends the file (closed unwritten; the caller removes it) or hash. */
  async abort(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#current = undefined;
    this.#used = 0;
    // A stopped thread already closed the file: asking would only start a fresh worker for nothing.
    if (this.#error === undefined) await this.thread.call({ t: "abort", id: this.id }).catch(() => {});
    this.thread.forget(this.id);
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }
}

/** One file being written by an {@linkcode IoThread}. */
export class FileSink extends Channel {
  /** @internal Use {@linkcode IoThread.open}. */
  constructor(thread: IoThread, id: number) {
    super(thread, id, "write");
  }

  /** Sends what is buffered, sets the file's times to `mtime` and closes it; throws any write error. */
  async finish(mtime: Date): Promise<void> {
    await this.end({ t: "close", mtimeMs: mtime.getTime() });
  }
}

/** A SHA-256 computed by an {@linkcode IoThread}. */
export class ThreadHasher extends Channel {
  /** @internal Use {@linkcode IoThread.hasher}. */
  constructor(thread: IoThread, id: number) {
    super(thread, id, "update");
  }

  /** The hash (hex) of everything pushed. */
  async digest(): Promise<string> {
    return (await this.end({ t: "digest" })) ?? "";
  }
}

/**
 * A pass-through stream that hashes its bytes (SHA-256) on `thread` and calls `check(hash, size)` at the
 * end, before passing the end on: a throwing check errors the stream, so a store writing it keeps nothing.
 * The thread-side counterpart of `hashingStream` in `streams.ts`, for large values.
 *
 * @example
 * ```ts ignore
 * const checked = body.pipeThrough(threadHashingStream(thread, (hash) => {
 *   if (hash !== expected) throw new Error("hash mismatch");
 * }));
 * ```
 */
export function threadHashingStream(
  thread: IoThread,
  check: (hash: string, size: number) => void,
): TransformStream<Uint8Array, Uint8Array> {
  let hasher: Promise<ThreadHasher> | undefined;
  let size = 0;
  const abort = () => void hasher?.then((h) => h.abort(), () => {});
  return new TransformStream<Uint8Array, Uint8Array>({
    start() {
      hasher = thread.hasher();
      hasher.catch(() => {}); // observed by transform/flush
    },
    async transform(chunk, controller) {
      size += chunk.byteLength;
      await (await hasher!).push(chunk);
      controller.enqueue(chunk);
    },
    async flush() {
      check(await (await hasher!).digest(), size);
    },
    cancel: abort,
  } as Transformer<Uint8Array, Uint8Array>);
}
