/**
 * A `Deno.serve` request/response pair dressed as the part of a `node:http2` server stream that
 * {@linkcode GrpcHandler} uses, so the gRPC hot path serves both server paths with one implementation:
 * events `data`, `end`, `close`, `wantTrailers`, `drain`; `resume()`, `iterator()`, `respond()`,
 * `write()`, `end()`, `sendTrailers()`, `destroyed`, `closed`, `session` (always undefined: the send
 * backlog is bounded by the response body's queue instead). Trailers go out through
 * `deno_compat/deno_serve_trailers.ts`.
 *
 * The response (status 200 and the headers given to the constructor) is returned to `Deno.serve` at once,
 * its body streamed later: a streamed body is what keeps Deno 2.9.0 from panicking when the client resets
 * the HTTP/2 stream (`deno_compat/deno_serve_reset.ts`, denoland/deno#36046), and gRPC's status needs no
 * HTTP status decided late. So headers the handler adds at `respond()` time (an impl's
 * `context.responseHeader`) go out with the trailers on this path; no Cairn service sets any.
 *
 * @example
 * ```ts ignore
 * import { DenoServeStream } from "./deno_serve_stream.ts";
 * Deno.serve((req) => {
 *   const stream = new DenoServeStream(req, [["content-type", "application/grpc"]]);
 *   grpc.handle(stream.asHttp2Stream(), stream.headers);
 *   return stream.response;
 * });
 * ```
 * @module
 */
import { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { responseWithTrailers } from "./deno_compat/deno_serve_trailers.ts";
import { TRACING } from "../util/tracing.ts";

/** Bytes the response body may queue before `write()` returns false (HTTP/2 flow control drains it). */
const BODY_HIGH_WATER = 1024 * 1024;

/** One gRPC exchange on `Deno.serve`, seen as a `node:http2` server stream. */
export class DenoServeStream extends EventEmitter {
  readonly headers: IncomingHttpHeaders;
  /** The response, returned to `Deno.serve` at once (its body follows). */
  readonly response: Response;
  destroyed = false;
  closed = false;
  readonly session = undefined;

  readonly #request: Request;
  readonly #bufferBody: boolean;
  readonly #initial: [string, string][];
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly #setTrailers: (t: [string, string][]) => void;
  /** Headers given at `respond()` that were not among the initial ones: sent with the trailers. */
  #late: [string, string][] = [];
  #responded = false;
  #waitForTrailers = false;
  #ended = false;
  #reading = false;
  #needDrain = false;
  #closeEmitted = false;

  /**
   * `responseHeaders` go out at once with status 200. A request body announced (`content-length`) at most
   * `maxBufferedBody` bytes long is read whole, as one `data` chunk (no stream per call); others are streamed.
   * `headerNames` are the request headers copied into {@linkcode headers} besides the pseudo-headers (default:
   * every one the gRPC handler may read; `traceparent` only while tracing).
   */
  constructor(
    request: Request,
    responseHeaders: [string, string][],
    maxBufferedBody = 0,
    headerNames: readonly string[] = GRPC_HEADERS,
  ) {
    super();
    this.#request = request;
    this.headers = grpcHeadersOf(request, headerNames);
    const length = request.headers.get("content-length");
    this.#bufferBody = length !== null && /^\d{1,10}$/.test(length) && Number(length) <= maxBufferedBody;
    this.#initial = responseHeaders;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => {
        if (this.#needDrain) {
          this.#needDrain = false;
          this.emit("drain");
        }
      },
      cancel: () => this.#gone(),
    }, BODY_STRATEGY);
    const { response, setTrailers } = responseWithTrailers(request, body, responseHeaders);
    this.response = response;
    this.#setTrailers = setTrailers;
  }

  /** This object typed as the `node:http2` stream the gRPC handler expects (it implements what it uses). */
  asHttp2Stream(): ServerHttp2Stream {
    return this as unknown as ServerHttp2Stream;
  }

  override on(event: string | symbol, listener: (...args: unknown[]) => void): this {
    super.on(event, listener);
    if (event === "data") this.#flow();
    return this;
  }

  /** Starts reading the request body in flowing mode (`data` events, then `end`). */
  resume(): this {
    this.#flow();
    return this;
  }

  pause(): this {
    return this;
  }

  #flow(): void {
    if (this.#reading) return;
    this.#reading = true;
    if (this.#bufferBody) {
      this.#request.bytes().then((bytes) => {
        if (this.destroyed) return;
        if (bytes.byteLength > 0) this.emit("data", bytes);
        this.emit("end");
      }, () => this.#gone());
      return;
    }
    const body = this.#request.body;
    if (body === null) {
      queueMicrotask(() => this.emit("end"));
      return;
    }
    void (async () => {
      const reader = body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          this.emit("data", value);
        }
      } catch {
        this.#gone();
        return;
      }
      this.emit("end");
    })();
  }

  /** The request body's chunks (paused mode); returning early leaves the rest unread. */
  iterator(_options?: { destroyOnReturn?: boolean }): AsyncIterable<Uint8Array> {
    this.#reading = true;
    const body = this.#request.body;
    const gone = () => this.#gone();
    return {
      async *[Symbol.asyncIterator]() {
        if (body === null) return;
        const reader = body.getReader();
        try {
          for (;;) {
            let r: ReadableStreamReadResult<Uint8Array>;
            try {
              r = await reader.read();
            } catch {
              gone();
              return;
            }
            if (r.done) return;
            yield r.value;
          }
        } finally {
          reader.releaseLock();
        }
      },
    };
  }

  respond(headers: OutgoingHttpHeaders, options?: { endStream?: boolean; waitForTrailers?: boolean }): void {
    if (this.#responded || this.#ended) throw new Error("Response already sent");
    this.#responded = true;
    const trailers: [string, string][] = [];
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined || k === ":status" || isInitial(this.#initial, k)) continue;
      const target = options?.endStream && k.startsWith("grpc-") ? trailers : this.#late;
      if (Array.isArray(v)) { for (const x of v) target.push([k, x]); }
      else target.push([k, String(v)]);
    }
    if (options?.endStream) {
      // A trailers-only gRPC response: the status goes out as trailers after the headers already sent.
      this.sendTrailers({});
      this.#setTrailers([...this.#late, ...trailers]);
      this.#ended = true;
      this.#closeBody();
      return;
    }
    this.#waitForTrailers = options?.waitForTrailers ?? false;
  }

  write(chunk: Uint8Array): boolean {
    if (this.#ended || this.destroyed) return true;
    const c = this.#controller;
    try {
      c.enqueue(chunk);
    } catch {
      this.#gone();
      return true;
    }
    if ((c.desiredSize ?? 0) <= 0) {
      this.#needDrain = true;
      return false;
    }
    return true;
  }

  end(chunk?: Uint8Array): this {
    if (chunk !== undefined) this.write(chunk);
    if (this.#ended) return this;
    this.#ended = true;
    if (this.#waitForTrailers && !this.destroyed) this.emit("wantTrailers");
    this.#closeBody();
    return this;
  }

  sendTrailers(headers: OutgoingHttpHeaders): void {
    const list: [string, string][] = [...this.#late];
    for (const k in headers) {
      const v = headers[k];
      if (v !== undefined) list.push([k, String(v)]);
    }
    if (list.length > 0 && !this.destroyed) this.#setTrailers(list);
  }

  #closeBody(): void {
    try {
      this.#controller.close();
    } catch { /* cancelled meanwhile */ }
    queueMicrotask(() => this.#emitClose());
  }

  /** The client went away: the call sees `close` before it finished. */
  #gone(): void {
    if (this.destroyed || this.#closeEmitted) return;
    this.destroyed = true;
    this.#ended = true;
    this.#emitClose();
  }

  #emitClose(): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    this.closed = true;
    if (this.#needDrain) this.emit("drain");
    this.emit("close");
  }
}

/** Request headers the gRPC handler reads (the rest reach a service as `context.requestHeader`). */
export const GRPC_HEADERS: readonly string[] = [
  "content-type",
  "grpc-encoding",
  "grpc-accept-encoding",
  "grpc-timeout",
];

/** The queuing strategy of every response body (a strategy holds no state: one serves every stream). */
const BODY_STRATEGY = new ByteLengthQueuingStrategy({ highWaterMark: BODY_HIGH_WATER });

function isInitial(initial: [string, string][], name: string): boolean {
  for (const [k] of initial) if (k === name) return true;
  return false;
}

/**
 * The pseudo-headers and the gRPC headers of `request`, as `node:http2` gives them, without walking every
 * header (Fetch headers iterate sorted) or parsing the URL: `request.url` is split where its authority and
 * path start. A path or authority a URL parser would rewrite (percent escapes, dot segments, upper case or
 * a default port in the authority) takes the URL parser, as before.
 */
function grpcHeadersOf(request: Request, names: readonly string[]): IncomingHttpHeaders {
  const url = request.url;
  const schemeEnd = url.indexOf("://");
  const pathStart = url.indexOf("/", schemeEnd + 3);
  let scheme = url.slice(0, schemeEnd);
  let authority = pathStart < 0 ? url.slice(schemeEnd + 3) : url.slice(schemeEnd + 3, pathStart);
  let path = pathStart < 0 ? "/" : url.slice(pathStart);
  if (
    schemeEnd <= 0 || NEEDS_URL_PATH.test(path) || NEEDS_URL_AUTHORITY.test(authority) ||
    (scheme === "http" && authority.endsWith(":80")) || (scheme === "https" && authority.endsWith(":443"))
  ) {
    const parsed = new URL(url);
    scheme = parsed.protocol.slice(0, -1);
    authority = parsed.host;
    path = parsed.pathname + parsed.search;
  }
  const h: IncomingHttpHeaders = {
    ":method": request.method,
    ":path": path,
    ":scheme": scheme,
    ":authority": authority,
  };
  const headers = request.headers;
  for (const name of names) {
    const v = headers.get(name);
    if (v !== null) h[name] = v;
  }
  if (TRACING) {
    const v = headers.get("traceparent");
    if (v !== null) h.traceparent = v;
  }
  return h;
}

/** Paths a URL parser rewrites: escapes, dot segments, backslashes, fragments, bytes outside printable ASCII. */
const NEEDS_URL_PATH = /[%\\#]|\/\.|[^\x21-\x7e]/;
/** Authorities a URL parser rewrites: upper case, escapes, user info, bytes outside printable ASCII. */
const NEEDS_URL_AUTHORITY = /[A-Z%@\\]|[^\x21-\x7e]/;
