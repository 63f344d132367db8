/**
 * The `Deno.serve` server path (listener `server: "deno_serve"`): one port serving gRPC over HTTP/2 (h2c with
 * prior knowledge, or TLS with ALPN `h2`) through the same {@linkcode GrpcHandler} as the `node:http2` path,
 * with real trailers (see `deno_compat/deno_serve_trailers.ts`), and Connect, gRPC-Web and the plain HTTP
 * routes over HTTP/1.1 and HTTP/2. Connection-level HTTP/2 behaviour (windows, keep-alive, header and idle
 * timeouts, reset floods) is Deno's own; `nativelink_schema.ts` refuses the settings of those on this path,
 * and mTLS (client certificates must be verified) stays on `node:http2`. `upload_idle_timeout_s` covers gRPC
 * uploads and PUT route bodies (408). `close()` refuses new calls (UNAVAILABLE / 503) while in-flight ones
 * finish, then ends what is left.
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
import { onExchangeOver } from "./deno_compat/deno_serve_trailers.ts";
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
    try {
      for (const route of routes) {
        const response = await route(request, undefined);
        if (response !== undefined) return response;
      }
      return new Response(null, { status: 404 });
    } catch (err) {
      if (idle.fired) {
        return new Response(
          `The request body sent nothing for ${limits.uploadIdleMs / 1000}s (limits.upload_idle_timeout_s)\n`,
          { status: 408, headers: { "content-type": "text/plain; charset=utf-8", connection: "close" } },
        );
      }
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
  const stopped = new Promise<Response>((resolve) => {
    forceStop = () =>
      resolve(
        new Response("The server is shutting down\n", {
          status: 503,
          headers: { "content-type": "text/plain; charset=utf-8", connection: "close" },
        }),
      );
  });
  let draining = false;

  const acceptGzip = accepted.includes("gzip");
  const sendGzip = cfg.compression?.send_compression_algorithm === "gzip";
  /** The request headers GrpcHandler reads on this listener (grpc-accept-encoding only when it may gzip). */
  const grpcHeaderNames = ["grpc-encoding", "grpc-timeout", ...(sendGzip ? ["grpc-accept-encoding"] : [])];
  const handler = (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> => {
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
    if (draining) {
      return new Response("The server is shutting down\n", {
        status: 503,
        headers: { "content-type": "text/plain; charset=utf-8", connection: "close" },
      });
    }
    let release: (() => void) | undefined;
    if (request.method === "PUT" || request.method === "POST") {
      const conn = connectionOf(remoteOf(info));
      const r = uploads.admit(conn.key);
      if (r === undefined) {
        conn.done();
        return Promise.resolve(
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
    // Deno 2.9.0 panics when a response comes after the client reset the HTTP/2 stream: a request whose
    // exchange ended first is never answered (its promise is dropped). The answer waits one macrotask so a
    // reset already seen by Deno reaches the callback first.
    // Only for bodiless requests: in legacy abort mode the callback also fires once a request body is
    // complete, which cannot be told apart from a reset (POST/PUT stay exposed: see the README).
    let answered = false;
    let reset = false;
    if (request.body === null) {
      onExchangeOver(request, () => {
        if (!answered) reset = true;
      });
    }
    return new Promise<Response>((resolve) => {
      // After the grace period a request still in flight gets 503 at once (its route may wait on a body).
      void Promise.race([connect(request).catch(() => new Response(null, { status: 500 })), stopped]).then((
        response,
      ) =>
        setTimeout(() => {
          httpInFlight--;
          release?.();
          if (reset) {
            countEvent("client_gone");
            response.body?.cancel().catch(() => {});
            return;
          }
          answered = true;
          resolve(response);
        }, 0)
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
            return new Response(null, { status: 500 });
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
        grpc.close();
        const finished = server.shutdown();
        forceStop();
        watchedBodies.cancelAll();
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
