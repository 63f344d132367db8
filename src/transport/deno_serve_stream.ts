/**
 * A `Deno.serve` request/response pair dressed as the part of a `node:http2` server stream that
 * {@linkcode GrpcHandler} uses, so the gRPC hot path serves both server paths with one implementation:
 * events `data`, `end`, `close`, `wantTrailers`, `drain`; `resume()`, `iterator()`, `respond()`,
 * `write()`, `end()`, `sendTrailers()`, `destroyed`, `closed`, `session` (always undefined: the send
 * backlog is bounded by the response body's queue instead). Trailers go out through
 * `deno_compat/deno_serve_trailers.ts`.
 *
 * @example
 * ```ts ignore
 * import { DenoServeStream } from "./deno_serve_stream.ts";
 * Deno.serve((req) => {
 *   const stream = new DenoServeStream(req);
 *   grpc.handle(stream.asHttp2Stream(), stream.headers);
 *   return stream.response;
 * });
 * ```
 * @module
 */
import { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { onExchangeOver, responseWithTrailers } from "./deno_compat/deno_serve_trailers.ts";

/** Bytes the response body may queue before `write()` returns false (HTTP/2 flow control drains it). */
const BODY_HIGH_WATER = 1024 * 1024;

/** One gRPC exchange on `Deno.serve`, seen as a `node:http2` server stream. */
export class DenoServeStream extends EventEmitter {
  readonly headers: IncomingHttpHeaders;
  /** Resolves with the response once the handler responded (or the client is gone). */
  readonly response: Promise<Response>;
  destroyed = false;
  closed = false;
  readonly session = undefined;

  readonly #request: Request;
  #resolve!: (r: Response) => void;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #setTrailers: ((t: [string, string][]) => void) | undefined;
  #waitForTrailers = false;
  #ended = false;
  #reading = false;
  #needDrain = false;
  #closeEmitted = false;

  constructor(request: Request) {
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
    this.response = new Promise((r) => this.#resolve = r);
    onExchangeOver(request, () => {
      // Called when the client went away, and (Deno 2.9.0 legacy mode) when the response was sent.
      if (!this.#ended) this.destroyed = true;
      this.#emitClose();
    });
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
    const self = this;
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
              self.#gone();
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
    if (this.#controller !== undefined || this.#ended) throw new Error("Response already sent");
    const out: [string, string][] = [];
    const trailers: [string, string][] = [];
    let status = 200;
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      if (k === ":status") {
        status = Number(v);
        continue;
      }
      // A trailers-only gRPC response: Deno.serve cannot end a stream on its HEADERS frame, so the status
      // goes out as trailers after empty headers (equally valid gRPC).
      if (options?.endStream && (k === "grpc-status" || k === "grpc-message" || k === "grpc-status-details-bin")) {
        trailers.push([k, String(v)]);
        continue;
      }
      if (Array.isArray(v)) { for (const x of v) out.push([k, x]); }
      else out.push([k, String(v)]);
    }
    void status;
    if (options?.endStream) {
      this.#ended = true;
      const { response, setTrailers } = responseWithTrailers(this.#request, null, out);
      if (trailers.length > 0) setTrailers(trailers);
      this.#resolve(response);
      return;
    }
    this.#waitForTrailers = options?.waitForTrailers ?? false;
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
    const { response, setTrailers } = responseWithTrailers(this.#request, body, out);
    this.#setTrailers = setTrailers;
    this.#resolve(response);
  }

  write(chunk: Uint8Array): boolean {
    const c = this.#controller;
    if (c === undefined || this.#ended || this.destroyed) return true;
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
    try {
      this.#controller?.close();
    } catch { /* cancelled meanwhile */ }
    return this;
  }

  sendTrailers(headers: OutgoingHttpHeaders): void {
    const list: [string, string][] = [];
    for (const k in headers) {
      const v = headers[k];
      if (v !== undefined) list.push([k, String(v)]);
    }
    this.#setTrailers?.(list);
  }

  /** The client went away: the call sees `close` before it finished. */
  #gone(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.#ended = true;
    this.#emitClose();
  }

  #emitClose(): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    this.closed = true;
    if (this.#needDrain) this.emit("drain");
    // If no response was made (the client left first), Deno discards this one.
    this.#resolve(new Response(null, { status: 499 }));
    this.emit("close");
  }
}
