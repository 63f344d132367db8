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
  readonly #initial: Set<string>;
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

  constructor(request: Request, responseHeaders: [string, string][]) {
    super();
    this.#request = request;
    const url = new URL(request.url);
    const h: IncomingHttpHeaders = {
      ":method": request.method,
      ":path": url.pathname + url.search,
      ":scheme": url.protocol.slice(0, -1),
      ":authority": url.host,
    };
    for (const [k, v] of request.headers) h[k] = v;
    this.headers = h;
    this.#initial = new Set(responseHeaders.map(([k]) => k));
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
    }, new ByteLengthQueuingStrategy({ highWaterMark: BODY_HIGH_WATER }));
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
      if (v === undefined || k === ":status" || this.#initial.has(k)) continue;
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
