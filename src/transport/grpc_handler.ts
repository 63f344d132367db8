/**
 * The gRPC hot path: a thin envelope layer on `node:http2` server streams. It routes `/pkg.Service/Method`
 * to a connect-es `ServiceImpl` method, parses and writes length-prefixed frames, honours `grpc-timeout`,
 * client cancellation, gzip and back-pressure, and ends every call with `grpc-status` trailers. Each call
 * object is also the impl's `HandlerContext` (headers, signal and context values are made lazily).
 *
 * @example
 * ```ts ignore
 * import http2 from "node:http2";
 * import { GrpcHandler } from "./grpc_handler.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const grpc = new GrpcHandler({ bindings: [{ service: Health, impl: { check: () => ({ status: 1 }) } }] });
 * http2.createServer().on("stream", (stream, headers) => grpc.handle(stream, headers));
 * ```
 * @module
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import zlib from "node:zlib";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  isMessage,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code as ConnectCode,
  ConnectError,
  type ContextValues,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import { CairnError, Code } from "../util/error.ts";
import { decodeRequest } from "../util/proto_wire.ts";
import {
  encodeFrame,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameParser,
  parseGrpcTimeout,
  parseSingleFrame,
} from "./grpc_frame.ts";
import { percentEncode, statusTrailers } from "./grpc_status.ts";
import { type MethodStats, methodStats } from "./grpc_stats.ts";
import { SendBacklog } from "./deno_compat/mod.ts";
import { kPeer, peerOf } from "./peer.ts";
import { countEvent } from "./guard.ts";
import {
  endRpcSpan,
  grpcMessage,
  setRequestAttributes,
  startRpcSpan,
  TRACING,
  withSpan,
} from "./rpc_tracing.ts";
import type { TraceSpan } from "../util/tracing.ts";
import {
  type EncodedServerStream,
  type EncodedUnary,
  kReleasesPieces,
  type ServiceBinding,
  type TransportLog,
} from "./types.ts";

/** Options of {@linkcode GrpcHandler}. */
export interface GrpcHandlerOptions {
  readonly bindings: readonly ServiceBinding[];
  /** Compress responses with gzip when the client accepts it. */
  readonly sendCompression?: "gzip" | "none" | undefined;
  /** Request encodings accepted besides identity. */
  readonly acceptCompression?: readonly string[] | undefined;
  /** Largest accepted message (after decompression). Default 4 MiB. */
  readonly maxMessageBytes?: number | undefined;
  readonly log?: TransportLog | undefined;
  /**
   * Admits a client-streaming call (an upload) on `stream`'s connection: returns its release, or undefined
   * when a limit is reached (the call then ends at once with RESOURCE_EXHAUSTED). Default: all admitted.
   */
  readonly admitUpload?: ((stream: ServerHttp2Stream) => (() => void) | undefined) | undefined;
  /**
   * A call whose request is still open but sends no byte for this long (while the handler waits for it)
   * ends with DEADLINE_EXCEEDED. Default 30 s.
   */
  readonly requestIdleMs?: number | undefined;
  /**
   * The streams' writes are done with a chunk by their callback (`node:http2`), so a server-streaming
   * producer may refill a message's buffers once it is asked for the next one (see `kReleasesPieces`).
   * Default false.
   */
  readonly releasesPieces?: boolean | undefined;
}

type Impl = (request: unknown, context: HandlerContext) => unknown;

interface MethodEntry {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly input: DescMessage;
  readonly output: DescMessage;
  readonly streamingRequest: boolean;
  readonly streamingResponse: boolean;
  readonly impl: Impl | undefined;
  /** The binding's encoded-bytes version of a unary or server-streaming method, preferred when present. */
  readonly encoded: EncodedUnary | EncodedServerStream | undefined;
  readonly stats: MethodStats;
}

/** Pieces of a streamed message up to this size are copied into its frame header's write. */
const INLINE_PIECE_BYTES = 64;

/** Responses smaller than this are sent uncompressed even when gzip is on. */
const COMPRESS_MIN_BYTES = 1024;

/** Serves gRPC (`application/grpc`, `application/grpc+proto`) calls on HTTP/2 streams. */
export class GrpcHandler {
  readonly #methods = new Map<string, MethodEntry>();
  readonly #active = new Set<GrpcCall>();
  readonly acceptGzip: boolean;
  readonly sendGzip: boolean;
  readonly maxMessageBytes: number;
  readonly log: TransportLog | undefined;
  readonly requestIdleMs: number;
  readonly releasesPieces: boolean;
  readonly #admitUpload: GrpcHandlerOptions["admitUpload"];
  /** Bounds what server-streaming calls queue per connection (Deno's http2 writes ignore flow control). */
  readonly backlog = new SendBacklog(4 * 1024 * 1024);

  constructor(options: GrpcHandlerOptions) {
    for (const { service, impl, encoded } of options.bindings) {
      for (const method of service.methods) {
        const fn = impl[method.localName];
        const raw = method.methodKind === "unary" || method.methodKind === "server_streaming"
          ? encoded?.[method.localName]
          : undefined;
        const path = `/${service.typeName}/${method.name}`;
        this.#methods.set(path, {
          stats: methodStats(path),
          service,
          method,
          input: method.input,
          output: method.output,
          streamingRequest: method.methodKind === "client_streaming" ||
            method.methodKind === "bidi_streaming",
          streamingResponse: method.methodKind === "server_streaming" ||
            method.methodKind === "bidi_streaming",
          impl: typeof fn === "function" ? (fn as Impl).bind(impl) : undefined,
          encoded: raw,
        });
      }
    }
    this.acceptGzip = options.acceptCompression?.includes("gzip") ?? false;
    this.sendGzip = options.sendCompression === "gzip";
    this.maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
    this.log = options.log;
    this.requestIdleMs = options.requestIdleMs ?? 30_000;
    this.releasesPieces = options.releasesPieces ?? false;
    this.#admitUpload = options.admitUpload;
  }

  /** Whether `contentType` is a gRPC protobuf request this handler serves. */
  static accepts(contentType: string | undefined): boolean {
    return contentType === "application/grpc" || contentType === "application/grpc+proto";
  }

  /** Calls in flight. */
  get activeCalls(): number {
    return this.#active.size;
  }

  /**
   * Serves one HTTP/2 stream whose content-type passed {@linkcode GrpcHandler.accepts}. `headers` needs the
   * pseudo-headers and the `grpc-*` ones; `requestHeaders`, when given, is the whole header set a service sees
   * as `context.requestHeader` (default: made from `headers`). The caller has put an `error` listener on
   * `stream` (a `node:http2` stream emits errors when the client goes away).
   */
  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, requestHeaders?: Headers): void {
    const path = headers[":path"];
    const entry = path === undefined ? undefined : this.#methods.get(path);
    if (entry === undefined) {
      return trailersOnly(stream, Code.Unimplemented, `Unknown gRPC method ${path}`);
    }
    if (entry.impl === undefined) {
      return trailersOnly(
        stream,
        Code.Unimplemented,
        `${entry.service.typeName}.${entry.method.name} is not implemented`,
      );
    }
    if (headers[":method"] !== "POST") {
      return trailersOnly(stream, Code.Unimplemented, `gRPC requires POST, not ${headers[":method"]}`);
    }
    const encoding = headers["grpc-encoding"];
    let gzipIn = false;
    if (encoding !== undefined && encoding !== "identity") {
      if (encoding !== "gzip" || !this.acceptGzip) {
        return trailersOnly(stream, Code.Unimplemented, `Compression "${encoding}" is not supported`);
      }
      gzipIn = true;
    }
    const gzipOut = this.sendGzip && acceptsGzip(headers["grpc-accept-encoding"]);
    let timeoutMs: number | undefined;
    try {
      timeoutMs = parseGrpcTimeout(headers["grpc-timeout"] as string | undefined);
    } catch (err) {
      return trailersOnly(stream, Code.InvalidArgument, (err as Error).message);
    }
    let release: (() => void) | undefined;
    if (entry.streamingRequest && this.#admitUpload !== undefined) {
      release = this.#admitUpload(stream);
      if (release === undefined) {
        return trailersOnly(
          stream,
          Code.ResourceExhausted,
          `Too many uploads in flight: ${entry.service.typeName}.${entry.method.name} refused ` +
            `(limits.max_uploads_per_connection / limits.max_uploads); retry later`,
        );
      }
    }
    const call = new GrpcCall(this, stream, headers, entry, gzipIn, gzipOut, release, requestHeaders);
    this.#active.add(call);
    call.start(timeoutMs);
  }

  /** Ends every call in flight with `reason` (UNAVAILABLE on shutdown) and aborts its handler's signal. */
  abortAll(reason: ConnectError): void {
    for (const call of [...this.#active]) call.cancel(reason);
    this.#stopSweep();
  }

  /** @internal */
  release(call: GrpcCall): void {
    this.#active.delete(call);
  }

  /**
   * Stalled requests are found by one sweep over the calls in flight (one timer for all, none per call). The
   * sweep runs while calls are in flight and stops itself at the first tick with none (starting and
   * stopping an interval per call costs more than the call's own work); {@linkcode GrpcHandler.close} stops it.
   */
  #sweep: ReturnType<typeof setInterval> | undefined;

  /** @internal Makes sure the idle sweep runs: `call` waits for request bytes (see `GrpcCall.waitingSince`). */
  watchIdle(): void {
    if (this.#sweep !== undefined) return;
    const every = Math.max(10, Math.min(1000, Math.floor(this.requestIdleMs / 4)));
    this.#sweep = setInterval(() => {
      if (this.#active.size === 0) return this.#stopSweep();
      const now = Date.now();
      for (const c of this.#active) {
        if (c.waiting && now - c.lastDataAt >= this.requestIdleMs) c.idleTimeout();
      }
    }, every);
    Deno.unrefTimer(this.#sweep);
  }

  /** Stops the idle sweep (the server is closed; calls still in flight were ended by {@linkcode abortAll}). */
  close(): void {
    this.#stopSweep();
  }

  #stopSweep(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
  }
}

const enum State {
  /** Nothing sent yet: an error goes out as a trailers-only response. */
  Idle,
  /** Headers sent, messages may follow. */
  Open,
  /** Trailers are queued (the stream was ended). */
  Ending,
  /** Finished or torn down. */
  Done,
}

/** One gRPC call in flight; also the handler's `HandlerContext`. */
class GrpcCall implements HandlerContext {
  readonly method: DescMethod;
  readonly service: DescService;
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";

  readonly #owner: GrpcHandler;
  readonly #stream: ServerHttp2Stream;
  readonly #headers: IncomingHttpHeaders;
  readonly #entry: MethodEntry;
  readonly #gzipIn: boolean;
  readonly #gzipOut: boolean;
  #state = State.Idle;
  #deadline: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #abortController: AbortController | undefined;
  #abortReason: unknown;
  #requestHeader: Headers | undefined;
  /** The request's whole header set when the server path has it as Fetch headers (copied on first use). */
  readonly #fetchHeaders: Headers | undefined;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;
  #values: ContextValues | undefined;
  #chunks: Uint8Array[] = [];
  #received = 0;
  #trailers: Record<string, string> = OK_TRAILERS;
  readonly #startedAt = performance.now();
  readonly #release: (() => void) | undefined;
  /** The call's span when tracing is on (see rpc_tracing.ts); `#spanTagged` once it has the request's attributes. */
  #span: TraceSpan | undefined;
  #spanTagged = false;
  /** @internal Request idle watch (read by the handler's sweep): whether the handler waits for request bytes. */
  waiting = false;
  /** @internal When the last request byte came (or the wait began). */
  lastDataAt = 0;

  constructor(
    owner: GrpcHandler,
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    entry: MethodEntry,
    gzipIn: boolean,
    gzipOut: boolean,
    release: (() => void) | undefined,
    requestHeaders: Headers | undefined,
  ) {
    this.#release = release;
    this.#fetchHeaders = requestHeaders;
    this.#owner = owner;
    this.#stream = stream;
    this.#headers = headers;
    this.#entry = entry;
    this.method = entry.method;
    this.service = entry.service;
    this.#gzipIn = gzipIn;
    this.#gzipOut = gzipOut;
  }

  // ---- HandlerContext ----

  get signal(): AbortSignal {
    if (this.#abortController === undefined) {
      this.#abortController = new AbortController();
      if (this.#abortReason !== undefined) this.#abortController.abort(this.#abortReason);
    }
    return this.#abortController.signal;
  }

  timeoutMs(): number | undefined {
    return this.#deadline === undefined ? undefined : this.#deadline - Date.now();
  }

  get requestHeader(): Headers {
    if (this.#requestHeader === undefined && this.#fetchHeaders !== undefined) {
      this.#requestHeader = new Headers(this.#fetchHeaders);
    }
    if (this.#requestHeader === undefined) {
      const h = new Headers();
      for (const key in this.#headers) {
        if (key.charCodeAt(0) === 58 /* : */) continue;
        const v = this.#headers[key];
        if (Array.isArray(v)) { for (const x of v) h.append(key, x); }
        else if (v !== undefined) h.append(key, v);
      }
      this.#requestHeader = h;
    }
    return this.#requestHeader;
  }

  get responseHeader(): Headers {
    return (this.#responseHeader ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.#responseTrailer ??= new Headers());
  }

  get values(): ContextValues {
    if (this.#values === undefined) {
      this.#values = createContextValues().set(kPeer, peerOf(this.#stream.session?.socket));
      if (this.#owner.releasesPieces) this.#values.set(kReleasesPieces, true);
    }
    return this.#values;
  }

  get url(): string {
    const h = this.#headers;
    return `${h[":scheme"] ?? "http"}://${h[":authority"] ?? "localhost"}${h[":path"]}`;
  }

  // ---- call lifecycle ----

  start(timeoutMs: number | undefined): void {
    const stream = this.#stream;
    (stream as TaggedStream)[kCall] = this;
    stream.on("close", GrpcCall.#onClose);
    if (timeoutMs !== undefined) {
      this.#deadline = Date.now() + timeoutMs;
      this.#timer = setTimeout(GrpcCall.#onDeadline, timeoutMs, this);
    }
    this.lastDataAt = Date.now();
    if (this.#entry.streamingRequest) {
      this.#call(() => this.#entry.impl!(this.#readMessages(), this), false);
    } else {
      this.waiting = true;
      this.#armIdle();
      stream.on("data", GrpcCall.#onData);
      stream.on("end", GrpcCall.#onEnd);
    }
  }

  /** Watches for a request that stalls: no byte for `requestIdleMs` while the handler waits for one. */
  #armIdle(): void {
    if (this.#state >= State.Ending) return;
    this.#owner.watchIdle();
  }

  /** @internal Called by the handler's sweep when the request sent nothing for `requestIdleMs`. */
  idleTimeout(): void {
    if (!this.waiting || this.#state >= State.Ending) return;
    countEvent("upload_idle_timeout");
    this.cancel(
      new ConnectError(
        `The request sent nothing for ${this.#owner.requestIdleMs / 1000}s (limits.upload_idle_timeout_s)`,
        ConnectCode.DeadlineExceeded,
      ),
    );
  }

  #stopIdle(): void {
    this.waiting = false;
  }

  /** Ends the call with `reason` and aborts the handler (client gone, deadline, shutdown). */
  cancel(reason: ConnectError): void {
    this.#fail(reason);
    this.#finish(reason);
  }

  // Stream listeners are shared (no closures per call); the stream carries its call under kCall.
  static #onData(this: ServerHttp2Stream, chunk: Uint8Array): void {
    (this as TaggedStream)[kCall].#data(chunk);
  }

  static #onEnd(this: ServerHttp2Stream): void {
    (this as TaggedStream)[kCall].#end();
  }

  static #onWantTrailers(this: ServerHttp2Stream): void {
    (this as TaggedStream)[kCall].#wantTrailers();
  }

  static #onClose(this: ServerHttp2Stream): void {
    (this as TaggedStream)[kCall].#closed();
  }

  static #onDeadline(call: GrpcCall): void {
    call.#timer = undefined;
    call.cancel(new ConnectError("Deadline exceeded", ConnectCode.DeadlineExceeded));
  }

  #data(chunk: Uint8Array): void {
    if (this.#state >= State.Ending) return;
    this.lastDataAt = Date.now();
    this.#received += chunk.byteLength;
    if (this.#received > this.#owner.maxMessageBytes + 5) {
      this.#chunks = [];
      this.#stream.off("data", GrpcCall.#onData);
      this.#stream.resume();
      return this.cancel(
        new ConnectError(
          `Cannot accept a gRPC message over ${this.#owner.maxMessageBytes} bytes (max_decoding_message_size)`,
          ConnectCode.ResourceExhausted,
        ),
      );
    }
    this.#chunks.push(chunk);
  }

  #end(): void {
    this.#stopIdle();
    if (this.#state >= State.Ending) return;
    const chunks = this.#chunks;
    this.#chunks = [];
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#received);
    const encoded = this.#entry.encoded;
    if (!TRACING) {
      // The common case without a closure: parse, invoke, settle.
      let result: unknown;
      try {
        const frame = parseSingleFrame(body, this.#owner.maxMessageBytes);
        result = encoded !== undefined
          ? encoded(this.#payload(frame), this)
          : this.#entry.impl!(this.#decode(frame), this);
      } catch (err) {
        return this.#fail(err);
      }
      return this.#settle(result, encoded !== undefined);
    }
    this.#call(() => {
      const frame = parseSingleFrame(body, this.#owner.maxMessageBytes);
      if (this.#span !== undefined) return this.#invokeTraced(frame, this.#span);
      return encoded !== undefined
        ? encoded(this.#payload(frame), this)
        : this.#entry.impl!(this.#decode(frame), this);
    }, encoded !== undefined);
  }

  /**
   * Runs the method and sends what it returns: a message (or encoded bytes, when `encoded`) for unary
   * responses, an iterable of messages (or of encoded byte pieces) for streamed ones.
   */
  #call(invoke: () => unknown, encoded: boolean): void {
    if (!TRACING) return this.#run(invoke, encoded);
    const span = this.#span = startRpcSpan(
      this.service.typeName,
      this.method.name,
      this.#headers.traceparent,
    );
    withSpan(span, () => this.#run(invoke, encoded));
  }

  /** {@linkcode #call}'s unary-request invocation when tracing: the span gets the request's attributes. */
  #invokeTraced(frame: Frame, span: TraceSpan): unknown {
    const payload = this.#payload(frame);
    const encoded = this.#entry.encoded;
    let request: unknown;
    try {
      request = decodeRequest(this.#entry.input, payload);
    } catch (err) {
      if (encoded === undefined) throw err;
    }
    setRequestAttributes(span, request);
    this.#spanTagged = true;
    return encoded !== undefined ? encoded(payload, this) : this.#entry.impl!(request, this);
  }

  #run(invoke: () => unknown, encoded: boolean): void {
    let result: unknown;
    try {
      result = invoke();
    } catch (err) {
      return this.#fail(err);
    }
    this.#settle(result, encoded);
  }

  /** Sends what the method returned (see {@linkcode #call}). */
  #settle(result: unknown, encoded: boolean): void {
    if (this.#entry.streamingResponse) {
      const messages = result as AsyncIterable<unknown>;
      void this.#pump(
        encoded ? messages as AsyncIterable<readonly Uint8Array[]> : this.#encodeEach(messages),
      );
    } else if (result instanceof Promise) {
      result.then((r) => this.#sendUnary(r, encoded), (err) => this.#fail(err));
    } else {
      this.#sendUnary(result, encoded);
    }
  }

  #sendUnary(result: unknown, encoded: boolean): void {
    if (this.#state !== State.Idle) return;
    let frame: Uint8Array;
    try {
      const bytes = encoded ? result as Uint8Array : this.#encode(result);
      frame = this.#gzipOut && bytes.byteLength >= COMPRESS_MIN_BYTES
        ? encodeFrame(zlib.gzipSync(bytes), true)
        : encodeFrame(bytes, false);
    } catch (err) {
      return this.#fail(err);
    }
    if (!this.#respond()) return;
    this.#state = State.Ending;
    this.#trailers = this.#responseTrailer ? withTrailers(OK_TRAILERS, this.#responseTrailer) : OK_TRAILERS;
    this.#stream.end(frame);
  }

  async *#encodeEach(messages: AsyncIterable<unknown>): AsyncGenerator<readonly Uint8Array[]> {
    for await (const message of messages) yield [this.#encode(message)];
  }

  /** Streams messages, each written as a frame header followed by its pieces (no copy unless gzipped). */
  /** The session of the response stream and the bytes written to it, for the send backlog. */
  #sentSession: ServerHttp2Stream["session"] | undefined;
  #queuedBytes = 0;

  async #pump(messages: AsyncIterable<readonly Uint8Array[]>): Promise<void> {
    const stream = this.#stream;
    const releases = this.#owner.releasesPieces;
    try {
      for await (const pieces of messages) {
        if (this.#state >= State.Ending) return;
        let length = 0;
        for (const p of pieces) length += p.byteLength;
        if (this.#state === State.Idle && !this.#respond()) return;
        let ok = true;
        let last: Uint8Array | undefined;
        if (this.#gzipOut && length >= COMPRESS_MIN_BYTES) {
          ok = stream.write(encodeFrame(zlib.gzipSync(Buffer.concat(pieces as Uint8Array[], length)), true));
        } else {
          // The frame header and the message's small leading pieces (a field's tag and length) go out as one
          // write, the large piece as another: Deno's http2 stream concatenates (copies) every write queued
          // behind one in progress, so each extra small write would cost a copy of the large one.
          let i = 0;
          let headLength = FRAME_HEADER_BYTES;
          while (i < pieces.length && pieces[i]!.byteLength <= INLINE_PIECE_BYTES) {
            headLength += pieces[i++]!.byteLength;
          }
          const head = new Uint8Array(headLength);
          new DataView(head.buffer).setUint32(1, length);
          for (let j = 0, at = FRAME_HEADER_BYTES; j < i; j++) {
            head.set(pieces[j]!, at);
            at += pieces[j]!.byteLength;
          }
          ok = stream.write(head);
          for (; i < pieces.length - 1; i++) ok = stream.write(pieces[i]!);
          if (i < pieces.length) last = pieces[i];
        }
        if (last !== undefined && releases) {
          // The producer may refill the pieces' buffers once it is asked for the next message: wait until the
          // stream took the bytes (its write callback, after which it no longer needs them). Meanwhile the
          // connection's socket is corked: Deno's http2 session hands it each DATA frame (16 KiB) as a write of
          // its own, one syscall each; corked, the message's frames leave in one writev at the uncork (measured:
          // about half the CPU per byte of a large Read).
          const socket = corked(stream);
          try {
            await written(stream, last);
          } finally {
            uncork(socket);
          }
        } else {
          if (last !== undefined) ok = stream.write(last);
          if (!ok) await drained(stream);
        }
        this.#sentSession ??= stream.session;
        this.#queuedBytes += length + 5;
        await this.#owner.backlog.wait(stream.session, length + 5, () => this.#state >= State.Ending);
        if (this.#state >= State.Ending) return;
      }
    } catch (err) {
      return this.#fail(err);
    }
    if (this.#state >= State.Ending) return;
    if (this.#state === State.Idle && !this.#respond()) return;
    this.#state = State.Ending;
    this.#trailers = this.#responseTrailer ? withTrailers(OK_TRAILERS, this.#responseTrailer) : OK_TRAILERS;
    stream.end();
  }

  async *#readMessages(): AsyncGenerator<unknown> {
    const parser = new FrameParser(this.#owner.maxMessageBytes);
    const stream = this.#stream;
    const chunks = (stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>)[
      Symbol.asyncIterator
    ]();
    try {
      for (;;) {
        this.waiting = true;
        this.lastDataAt = Date.now();
        this.#armIdle();
        const next = await chunks.next();
        this.waiting = false;
        if (next.done) break;
        parser.push(next.value);
        for (let frame = parser.next(); frame !== undefined; frame = parser.next()) {
          const message = this.#decode(frame);
          if (this.#span !== undefined && !this.#spanTagged) {
            this.#spanTagged = true;
            setRequestAttributes(this.#span, message);
          }
          yield message;
        }
      }
    } finally {
      this.#stopIdle();
    }
    if (this.#abortReason !== undefined) throw this.#abortReason;
    parser.finish();
  }

  #decode(frame: Frame): unknown {
    return decodeRequest(this.#entry.input, this.#payload(frame));
  }

  /** The frame's message bytes, gunzipped when compressed. */
  #payload(frame: Frame): Uint8Array {
    let data = frame.data;
    if (frame.compressed) {
      if (!this.#gzipIn) {
        throw new CairnError(Code.Internal, "Invalid gRPC request: compressed message without grpc-encoding");
      }
      try {
        data = zlib.gunzipSync(data, { maxOutputLength: this.#owner.maxMessageBytes });
      } catch (err) {
        if (err instanceof RangeError) {
          throw new CairnError(
            Code.ResourceExhausted,
            `Cannot accept a gRPC message over ${this.#owner.maxMessageBytes} bytes (max_decoding_message_size)`,
          );
        }
        throw new CairnError(
          Code.Internal,
          `Invalid gRPC request: cannot gunzip message: ${(err as Error).message}`,
        );
      }
    }
    return data;
  }

  #encode(message: unknown): Uint8Array {
    const schema = this.#entry.output;
    return toBinary(schema, isMessage(message, schema) ? message : create(schema, message as never));
  }

  /** Sends response headers; false when the stream is gone. */
  #respond(): boolean {
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) {
      this.#state = State.Done;
      return false;
    }
    const headers: OutgoingHttpHeaders = this.#gzipOut
      ? {
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-encoding": "gzip",
        "grpc-accept-encoding": "gzip",
      }
      : { ":status": 200, "content-type": "application/grpc" };
    if (this.#owner.acceptGzip) headers["grpc-accept-encoding"] = "gzip";
    if (this.#responseHeader) { for (const [k, v] of this.#responseHeader) headers[k] = v; }
    try {
      stream.respond(headers, { waitForTrailers: true });
    } catch {
      this.#state = State.Done;
      return false;
    }
    stream.on("wantTrailers", GrpcCall.#onWantTrailers); // emitted once per stream
    this.#state = State.Open;
    return true;
  }

  #wantTrailers(): void {
    const stream = this.#stream;
    try {
      if (!stream.destroyed && !stream.closed) stream.sendTrailers(this.#trailers);
    } catch { /* the client went away meanwhile */ }
    this.#state = State.Done;
  }

  #fail(err: unknown): void {
    if (this.#state >= State.Ending) return;
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) {
      // The client went away (its write errors are no server fault): counted as CANCELLED.
      this.#owner.log?.debug(`gRPC ${this.#headers[":path"]}: the client went away`);
      this.#state = State.Done;
      this.#finish(new ConnectError("The client cancelled the call", ConnectCode.Canceled));
      return;
    }
    if (!(err instanceof CairnError) && !(err instanceof ConnectError)) {
      this.#owner.log?.warn(`gRPC ${this.#headers[":path"]} failed:`, err);
    }
    let trailers = statusTrailers(err);
    if (this.#responseTrailer) trailers = withTrailers(trailers, this.#responseTrailer);
    if (this.#state === State.Idle) {
      this.#state = State.Done;
      this.#trailers = trailers;
      stream.resume();
      try {
        const headers: OutgoingHttpHeaders = {
          ":status": 200,
          "content-type": "application/grpc",
          ...trailers,
        };
        if (this.#responseHeader) { for (const [k, v] of this.#responseHeader) headers[k] ??= v; }
        stream.respond(headers, { endStream: true });
      } catch {
        // the stream went away meanwhile
      }
      return;
    }
    this.#state = State.Ending;
    this.#trailers = trailers;
    stream.end();
  }

  #closed(): void {
    if (this.#state !== State.Done) {
      this.#state = State.Done;
      // Reset before it finished: what it queued and HTTP/2 dropped must not count as the session's backlog.
      this.#owner.backlog.forgive(this.#sentSession, this.#queuedBytes);
      this.#finish(new ConnectError("The client cancelled the call", ConnectCode.Canceled));
    } else {
      this.#finish(undefined);
    }
  }

  /** Releases the call; aborts the handler's signal (with `reason`, or plainly on completion). */
  #finish(reason: unknown): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#release?.();
    this.#owner.release(this);
    this.#stopIdle();
    if (this.#abortReason !== undefined) return;
    const code = reason === undefined ? Number(this.#trailers["grpc-status"] ?? 0) : Code.Cancelled;
    this.#entry.stats.record(code, (performance.now() - this.#startedAt) / 1000);
    if (this.#span !== undefined) endRpcSpan(this.#span, code, grpcMessage(this.#trailers["grpc-message"]));
    this.#abortReason = reason ?? CALL_COMPLETE;
    this.#abortController?.abort(this.#abortReason);
  }
}

/** The abort reason of a call's signal once it completed normally (shared: creating one per call is costly). */
const CALL_COMPLETE = new DOMException("The call is complete", "AbortError");

const kCall = Symbol("cairn.grpcCall");
type TaggedStream = ServerHttp2Stream & { [kCall]: GrpcCall };

const OK_TRAILERS: Record<string, string> = { "grpc-status": "0" };

function withTrailers(base: Record<string, string>, extra: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of extra) out[k] = v;
  return Object.assign(out, base);
}

function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  const s = Array.isArray(header) ? header.join(",") : header;
  return s.split(",").some((e) => e.trim() === "gzip");
}

/** A trailers-only response: the status rides on the HEADERS frame that ends the stream. */
function trailersOnly(stream: ServerHttp2Stream, code: Code, message: string): void {
  stream.resume();
  if (stream.destroyed || stream.closed) return;
  try {
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(code),
      "grpc-message": percentEncode(message),
    }, { endStream: true });
  } catch {
    // the client went away
  }
}

/** Corks the socket of `stream`'s session; undefined when there is none (the session went away). */
function corked(stream: ServerHttp2Stream): { uncork(): void } | undefined {
  try {
    const socket = stream.session?.socket;
    socket?.cork();
    return socket;
  } catch {
    return undefined; // the session's socket is gone (its proxy throws)
  }
}

function uncork(socket: { uncork(): void } | undefined): void {
  try {
    socket?.uncork();
  } catch { /* the session's socket is gone */ }
}

/** Writes `chunk`; resolves once the stream is done with it (its write callback) or closed. */
function written(stream: ServerHttp2Stream, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("close", done);
      resolve();
    };
    stream.on("close", done);
    stream.write(chunk, done);
  });
}

function drained(stream: ServerHttp2Stream): Promise<void> {
  if (stream.destroyed || stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}
