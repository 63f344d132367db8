/**
 * The `Deno.serve` server path (listener `server: "deno_serve"`): one port serving gRPC over HTTP/2 (h2c with
 * prior knowledge, or TLS with ALPN `h2`) through the same {@linkcode GrpcHandler} as the `node:http2` path,
 * with real trailers (see `deno_compat/deno_serve_trailers.ts`), and Connect, gRPC-Web and the plain HTTP
 * routes over HTTP/1.1 and HTTP/2. Connection-level HTTP/2 behaviour (windows, keep-alive, header and idle
 * timeouts, reset floods) is Deno's own; `nativelink_schema.ts` refuses the settings of those on this path,
 * and mTLS (client certificates must be verified) stays on `node:http2`. `upload_idle_timeout_s` covers gRPC
 * uploads and PUT route bodies (408; unlike node_http2, the HTTP/1.1 connection stays open). `close()` refuses
 * new calls (UNAVAILABLE / 503) while in-flight ones finish, then ends what is left.
 *
 * Every answer reaches Deno with a streamed body (`deno_compat/deno_serve_reset.ts`): Deno 2.9.0 aborts the
 * process when a static answer meets an HTTP/2 stream the client reset while the handler ran
 * (denoland/deno#36046), and any Connect, gRPC-Web or HTTP request can be reset that way.
 *
 * @example
 * ```ts
 * import { createDenoServeServer } from "./deno_serve_server.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const server = createDenoServeServer({
 *   listener: { socket_address: "127.0.0.1:0", server: "deno_serve" },
 *   bindings: [{ service: Health, impl: { check: () => ({ status: 1 }) } }],
 * });
 * await server.listen();
 * await server.close();
 * ```
 * @module
 */
import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import { createConnectFetchHandler } from "./connect_handler.ts";
import { GrpcHandler } from "./grpc_handler.ts";
import { DenoServeStream } from "./deno_serve_stream.ts";
import { resetSafeResponse } from "./deno_compat/deno_serve_reset.ts";
import { httpStatusOf } from "./http_routes.ts";
import { type BoundAddress, parseSocketAddress } from "./listener.ts";
import { loadListenerTls } from "./tls.ts";
import { countEvent, resolveLimits, UploadAdmission } from "./guard.ts";
import { CairnError, Code } from "../util/error.ts";
import type { CairnServer, CairnServerOptions } from "./server.ts";
import { CONSOLE_TRANSPORT_LOG } from "./types.ts";
import { delay } from "../util/async.ts";

/** Creates a `Deno.serve` server for `bindings` and `routes` on `listener`. Nothing is bound until `listen()`. */
export function createDenoServeServer(options: CairnServerOptions): CairnServer {
  const log = options.log ?? CONSOLE_TRANSPORT_LOG;
  const cfg = options.listener;
  const accepted = cfg.compression?.accepted_compression_algorithms ?? [];
  const limits = resolveLimits(cfg);
  const maxMessageBytes = limits.maxMessageBytes;
  const uploads = new UploadAdmission(limits);
  const shutdown = new AbortController();
  /** One object per client connection (by remote address), held while it has uploads in flight. */
  const connections = new Map<string, { refs: number }>();
  const connectionOf = (remote: string): { key: object; done: () => void } => {
    let c = connections.get(remote);
    if (c === undefined) connections.set(remote, c = { refs: 0 });
    c.refs++;
    const conn = c;
    return {
      key: conn,
      done: () => {
        if (--conn.refs === 0 && connections.get(remote) === conn) connections.delete(remote);
      },
    };
  };
  /** The client of the gRPC call being handed to `grpc.handle` (its address is only needed for an upload). */
  let currentInfo: Deno.ServeHandlerInfo<Deno.NetAddr> | undefined;
  const remoteOf = (info: Deno.ServeHandlerInfo<Deno.NetAddr>) =>
    `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;

  const grpc = new GrpcHandler({
    bindings: options.bindings,
    sendCompression: cfg.compression?.send_compression_algorithm,
    acceptCompression: accepted,
    maxMessageBytes,
    log,
    admitUpload: () => {
      const conn = connectionOf(currentInfo === undefined ? "" : remoteOf(currentInfo));
      const release = uploads.admit(conn.key);
      if (release === undefined) {
        conn.done();
        return undefined;
      }
      return () => {
        release();
        conn.done();
      };
    },
    requestIdleMs: limits.uploadIdleMs,
  });
  const routes = options.routes ?? [];
  const watchedBodies = new BodyCancellers();
  const serveRoutes = async (original: Request): Promise<Response> => {
    const idle = { fired: false };
    // Only PUT bodies (Bazel's HTTP cache uploads, the only route bodies Cairn reads) are watched: a body
    // re-streamed through JavaScript loses Deno's native request-to-response piping, and a route echoing a
    // large POST body back to an HTTP/1.1 fetch client then stalls.
    const request = original.method === "PUT"
      ? watchBodyIdle(original, limits.uploadIdleMs, idle, watchedBodies)
      : original;
    // Deno.serve keeps the HTTP/1.1 connection open after this answer (a read of the request body is still
    // pending in Deno), unlike node_http2: the client keeps it until it closes it.
    const idleAnswer = () =>
      new Response(
        `The request body sent nothing for ${limits.uploadIdleMs / 1000}s (limits.upload_idle_timeout_s)\n`,
        { status: 408, headers: { "content-type": "text/plain; charset=utf-8", connection: "close" } },
      );
    try {
      for (const route of routes) {
        const response = await route(request, undefined);
        if (response === undefined) continue;
        // A route that turned the body's idle timeout into its own error answer (the HTTP cache: 500).
        if (idle.fired) {
          response.body?.cancel().catch(() => {});
          return idleAnswer();
        }
        return response;
      }
      return new Response(null, { status: 404 });
    } catch (err) {
      if (idle.fired) return idleAnswer();
      if ((err as { name?: string })?.name === "AbortError") {
        countEvent("client_gone");
        return new Response(null, { status: 499 });
      }
      log.warn(`HTTP ${request.method} ${request.url} failed:`, err);
      const e = CairnError.from(err);
      return new Response(`${e.message}\n`, {
        status: httpStatusOf(e.code),
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
  };
  const connect = createConnectFetchHandler({
    bindings: options.bindings,
    fallback: serveRoutes,
    gzip: accepted.includes("gzip"),
    maxMessageBytes,
    shutdownSignal: shutdown.signal,
    corsAllowedOrigins: cfg.cors_allowed_origins ?? [],
    log,
  });
  let httpInFlight = 0;
  let forceStop!: () => void;
  /** Settles (undefined) when the grace period is over: requests still in flight are then answered 503. */
  const stopped = new Promise<undefined>((resolve) => {
    forceStop = () => resolve(undefined);
  });
  let draining = false;
  /**
   * Set once `server.shutdown()` was called: once that completes, Deno answers a late response itself, with a
   * static 503 (see close()), so nothing is answered from then on.
   */
  let serverShutDown = false;

  const acceptGzip = accepted.includes("gzip");
  const sendGzip = cfg.compression?.send_compression_algorithm === "gzip";
  /** The request headers GrpcHandler reads on this listener (grpc-accept-encoding only when it may gzip). */
  const grpcHeaderNames = ["grpc-encoding", "grpc-timeout", ...(sendGzip ? ["grpc-accept-encoding"] : [])];
  const handler = (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> => {
    // Once shutdown() completes, Deno answers a late response itself with a static 503, which panics Deno
    // 2.9.0 for a reset stream: requests still arriving after it began (Deno stops taking new ones) are left
    // unanswered.
    if (serverShutDown) return new Promise<Response>(() => {});
    if (GrpcHandler.accepts(request.headers.get("content-type") ?? undefined)) {
      // The headers GrpcHandler would send, known up front (the response goes back at once: see the shim).
      const headers = sendGzip && acceptsGzip(request.headers.get("grpc-accept-encoding"))
        ? GZIP_RESPONSE_HEADERS
        : acceptGzip
        ? ACCEPT_GZIP_RESPONSE_HEADERS
        : PLAIN_RESPONSE_HEADERS;
      const stream = new DenoServeStream(request, headers, maxMessageBytes + 5, grpcHeaderNames);
      if (draining) {
        // Deno.serve cannot stop accepting while in-flight calls finish: new calls are refused instead.
        const s = stream.asHttp2Stream();
        s.resume();
        s.respond({ "grpc-status": "14", "grpc-message": "The server is shutting down" }, {
          endStream: true,
        });
        return stream.response;
      }
      currentInfo = info;
      grpc.handle(stream.asHttp2Stream(), stream.headers, request.headers);
      currentInfo = undefined;
      return stream.response;
    }
    if (draining) return resetSafeResponse(shuttingDown());
    let release: (() => void) | undefined;
    if (request.method === "PUT" || request.method === "POST") {
      const conn = connectionOf(remoteOf(info));
      const r = uploads.admit(conn.key);
      if (r === undefined) {
        conn.done();
        return resetSafeResponse(
          new Response(
            "Too many uploads in flight (limits.max_uploads_per_connection / limits.max_uploads)\n",
            {
              status: 503,
              headers: { "content-type": "text/plain; charset=utf-8", "retry-after": "1" },
            },
          ),
        );
      }
      release = () => {
        r();
        conn.done();
      };
    }
    httpInFlight++;
    // Deno 2.9.0 panics when a handler answers, with a static body, an HTTP/2 stream that the client reset
    // meanwhile (deno_compat/deno_serve_reset.ts): every answer goes out with a streamed body, decided in
    // the same microtask run as Deno takes it. After the server's shutdown began nothing is answered any more
    // (Deno would send its own static 503 then, see close()).
    return new Promise<Response>((resolve) => {
      // After the grace period a request still in flight gets 503 at once (its route may wait on a body).
      void Promise.race([connect(request).catch(() => new Response(null, { status: 500 })), stopped]).then(
        (answer) => {
          httpInFlight--;
          release?.();
          const response = answer ?? shuttingDown();
          if (serverShutDown) {
            countEvent("client_gone");
            response.body?.cancel().catch(() => {});
            return;
          }
          try {
            resolve(resetSafeResponse(response));
          } catch (err) {
            // A route returned a response whose body was used already: answered 500 instead of hanging.
            log.warn(`HTTP ${request.method} ${request.url}: unusable response:`, err);
            resolve(resetSafeResponse(new Response(null, { status: 500 })));
          }
        },
      );
    });
  };

  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  let address: BoundAddress | undefined;
  let closing: Promise<void> | undefined;

  return {
    get address() {
      return address;
    },
    async listen() {
      if (server) {
        throw new Error(`Cannot listen on "${cfg.socket_address}": the server is listening already`);
      }
      const { host, port } = parseSocketAddress(cfg.socket_address);
      const tls = cfg.tls ? await loadListenerTls(cfg.tls) : undefined;
      if (tls?.clientCas) {
        throw new CairnError(
          Code.InvalidArgument,
          `Cannot listen on "${cfg.socket_address}": mTLS needs server "node_http2" (Deno.serve cannot verify client certificates)`,
        );
      }
      try {
        server = Deno.serve({
          hostname: host,
          port,
          onListen: () => {},
          onError: (err) => {
            log.warn(`Deno.serve handler failed:`, err);
            // Streamed like every answer on this path (deno_compat/deno_serve_reset.ts).
            return resetSafeResponse(new Response(null, { status: 500 }));
          },
          ...(tls ? { cert: tls.cert, key: tls.key } : {}),
        }, handler);
      } catch (err) {
        throw new CairnError(
          Code.Unavailable,
          `Cannot listen on "${cfg.socket_address}": ${(err as Error).message}`,
          { cause: err },
        );
      }
      address = { host: server.addr.hostname, port: server.addr.port };
      return address;
    },
    close(graceMs = 5000) {
      closing ??= (async () => {
        if (!server) return;
        draining = true;
        const deadline = Date.now() + graceMs;
        while (Date.now() < deadline && (grpc.activeCalls > 0 || httpInFlight > 0)) await delay(10);
        if (grpc.activeCalls > 0 || httpInFlight > 0) {
          const reason = new ConnectError("The server is shutting down", ConnectCode.Unavailable);
          shutdown.abort(reason);
          grpc.abortAll(reason);
          await delay(20); // let the UNAVAILABLE trailers go out
        }
        // Requests still in flight are answered (503) before Deno's shutdown begins: once it completes, Deno
        // answers a late response itself with a static body, which panics Deno 2.9.0 on a reset stream.
        grpc.close();
        forceStop();
        watchedBodies.cancelAll();
        await delay(0); // the 503s reach Deno (microtasks) before the shutdown starts
        serverShutDown = true;
        const finished = server.shutdown();
        // Deno.serve's shutdown waits for every connection; one whose client stalls mid-body never ends, so
        // after a last second the server stops holding the process open instead.
        if (await Promise.race([finished.then(() => true), delay(1000).then(() => false)]) === false) {
          server.unref();
        }
      })();
      return closing;
    },
  };
}

/**
 * `request` with its body watched: when a route waits `idleMs` for a chunk that does not come, the body
 * errors (the route's store write is abandoned) and `idle.fired` is set (the answer is then 408).
 */
function watchBodyIdle(
  request: Request,
  idleMs: number,
  idle: { fired: boolean },
  cancellers: BodyCancellers,
): Request {
  const body = request.body;
  if (body === null) return request;
  const reader = body.getReader();
  const cancel = () => reader.cancel(new Error("The server is shutting down")).catch(() => {});
  cancellers.add(cancel);
  const watched = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          idle.fired = true;
          countEvent("upload_idle_timeout");
          reject(
            new CairnError(
              Code.DeadlineExceeded,
              "The request body sent nothing (limits.upload_idle_timeout_s)",
            ),
          );
        }, idleMs);
      });
      try {
        const next = await Promise.race([reader.read(), timeout]);
        if (next.done) {
          cancellers.delete(cancel);
          controller.close();
        } else controller.enqueue(next.value);
      } catch (err) {
        cancellers.delete(cancel);
        reader.cancel(err).catch(() => {});
        controller.error(err);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return new Request(request.url, {
    method: request.method,
    headers: request.headers,
    body: watched,
    duplex: "half",
  } as RequestInit);
}

/** Cancels the request bodies of routes still reading when the server stops. */
class BodyCancellers extends Set<() => void> {
  cancelAll(): void {
    for (const cancel of this) cancel();
    this.clear();
  }
}

/** The answer to an HTTP request refused or cut because the server is closing. */
function shuttingDown(): Response {
  return new Response("The server is shutting down\n", {
    status: 503,
    headers: { "content-type": "text/plain; charset=utf-8", connection: "close" },
  });
}

/** The response headers of a gRPC call on this path (shared: neither the stream nor Response changes them). */
const PLAIN_RESPONSE_HEADERS: [string, string][] = [["content-type", "application/grpc"]];
const ACCEPT_GZIP_RESPONSE_HEADERS: [string, string][] = [
  ["content-type", "application/grpc"],
  ["grpc-accept-encoding", "gzip"],
];
const GZIP_RESPONSE_HEADERS: [string, string][] = [
  ["content-type", "application/grpc"],
  ["grpc-encoding", "gzip"],
  ["grpc-accept-encoding", "gzip"],
];

function acceptsGzip(header: string | null): boolean {
  return header !== null && header.split(",").some((e) => e.trim() === "gzip");
}
