/**
 * `createCairnServer`: one listener (`socket_address`, optional TLS/mTLS) serving gRPC over HTTP/2 (the thin
 * hot path), Connect and gRPC-Web over HTTP/1.1 and HTTP/2 (connect-node), and plain HTTP routes — all on
 * the same port. `close()` drains in-flight calls for a grace period, then cancels them.
 *
 * @example
 * ```ts
 * import { createCairnServer } from "./server.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const server = createCairnServer({
 *   listener: { socket_address: "127.0.0.1:0" },
 *   bindings: [{ service: Health, impl: { check: () => ({ status: 1 }) } }],
 *   routes: [(req) => new URL(req.url).pathname === "/status" ? new Response("ok") : undefined],
 * });
 * const { port } = await server.listen();
 * await server.close();
 * ```
 * @module
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { TLSSocket } from "node:tls";
import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import { createConnectHandler } from "./connect_handler.ts";
import { GrpcHandler } from "./grpc_handler.ts";
import { createHttpRoutesHandler, type NodeRequest, type NodeResponse } from "./http_routes.ts";
import { type BoundAddress, Listener } from "./listener.ts";
import { loadListenerTls } from "./tls.ts";
import { linkInnerConnection } from "./peer.ts";
import { percentEncode } from "./grpc_status.ts";
import type { HttpListenerConfig, HttpRoute, ServiceBinding, TransportLog } from "./types.ts";

/** Options of {@linkcode createCairnServer}. */
export interface CairnServerOptions {
  /** The canonical HTTP listener config (NativeLink's `HttpListener`). */
  readonly listener: HttpListenerConfig;
  readonly bindings: readonly ServiceBinding[];
  readonly routes?: readonly HttpRoute[] | undefined;
  /** Default: `console` without debug output. */
  readonly log?: TransportLog | undefined;
}

/** A running (or ready) server. */
export interface CairnServer {
  /** Binds the listener; resolves with the bound host and port. */
  listen(): Promise<BoundAddress>;
  /**
   * Stops accepting connections, lets calls in flight finish for up to `graceMs` (default 5000), then
   * cancels the rest (their handlers' signals abort, clients get UNAVAILABLE) and drops every connection.
   */
  close(graceMs?: number): Promise<void>;
  /** The bound address once listening. */
  readonly address: BoundAddress | undefined;
}

const DEFAULT_LOG: TransportLog = {
  debug: () => {},
  warn: (m, ...d) => console.warn(m, ...d),
  error: (m, ...d) => console.error(m, ...d),
};

/** Creates a server for `bindings` and `routes` on `listener`. Nothing is bound until `listen()`. */
export function createCairnServer(options: CairnServerOptions): CairnServer {
  const log = options.log ?? DEFAULT_LOG;
  const cfg = options.listener;
  const accepted = cfg.compression?.accepted_compression_algorithms ?? [];
  const maxMessageBytes = cfg.max_decoding_message_size || 8 * 1024 * 1024;
  const shutdown = new AbortController();

  const grpc = new GrpcHandler({
    bindings: options.bindings,
    sendCompression: cfg.compression?.send_compression_algorithm,
    acceptCompression: accepted,
    maxMessageBytes,
    log,
  });
  const connect = createConnectHandler({
    bindings: options.bindings,
    fallback: createHttpRoutesHandler(options.routes ?? [], log),
    gzip: accepted.includes("gzip"),
    maxMessageBytes,
    shutdownSignal: shutdown.signal,
  });

  const sessions = new Set<http2.ServerHttp2Session>();
  const h2 = http2.createServer({ settings: http2Settings(cfg), maxSessionMemory: 64 });
  h2.on(
    "stream",
    (
      stream: http2.ServerHttp2Stream,
      headers: http2.IncomingHttpHeaders,
      _flags: number,
      rawHeaders: string[],
    ) => {
      if (GrpcHandler.accepts(headers["content-type"])) return grpc.handle(stream, headers);
      stream.on("error", ignore);
      const req = new http2.Http2ServerRequest(stream, headers, undefined as never, rawHeaders as never);
      const res = new http2.Http2ServerResponse(stream);
      connect(req, res);
    },
  );
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.on("error", ignore);
    const connectionWindow = cfg.advanced_http?.experimental_http2_initial_connection_window_size ||
      DEFAULT_CONNECTION_WINDOW;
    session.once("connect", () => session.setLocalWindowSize(connectionWindow));
    // Keep-alive pings every `http2_keep_alive_interval` s; one not answered within
    // `experimental_http2_keep_alive_timeout_s` (default 20 s) closes the connection. A timeout given alone
    // turns pings on every 60 s.
    const keepAliveTimeoutS = cfg.advanced_http?.experimental_http2_keep_alive_timeout_s;
    const keepAlive = cfg.advanced_http?.http2_keep_alive_interval || (keepAliveTimeoutS ? 60 : 0);
    const keepAliveTimeoutMs = (keepAliveTimeoutS || 20) * 1000;
    const pinger = keepAlive
      ? setInterval(() => {
        if (session.closed || session.destroyed) return;
        const deadline = setTimeout(() => session.destroy(), keepAliveTimeoutMs);
        if (!session.ping(() => clearTimeout(deadline))) clearTimeout(deadline);
      }, keepAlive * 1000)
      : undefined;
    session.once("close", () => {
      sessions.delete(session);
      if (pinger !== undefined) clearInterval(pinger);
    });
  });
  h2.on("sessionError", (err) => log.debug(`HTTP/2 session error: ${err.message}`));

  let h1InFlight = 0;
  const h1 = http.createServer((req, res) => {
    h1InFlight++;
    res.once("close", () => h1InFlight--);
    connect(req as NodeRequest, res as NodeResponse);
  });
  h1.on("clientError", (_err, socket) => socket.destroy());
  // Build tools pool HTTP/1.1 connections and reuse them across builds: keep idle ones for two minutes.
  h1.keepAliveTimeout = 120_000;
  // Deno's node:http drops keep-alive after a chunked response on a connection handed over with
  // emit("connection"), and Bazel's HTTP cache client then loses uploads on the closed connection. So HTTP/1.1
  // connections are piped into `h1` listening on its own loopback port, which keeps them alive.
  let h1Port: number | undefined;
  const toH1 = (socket: net.Socket) => {
    const upstream = net.connect({ port: h1Port!, host: "127.0.0.1", noDelay: true });
    upstream.once("connect", () => linkInnerConnection(upstream, socket));
    socket.setNoDelay?.(true);
    // The client leaving drops the inner connection at once; the inner side closing ends the client's
    // connection gracefully (a TLS close_notify, then FIN) so pooled clients see it closed, not reset.
    socket.on("error", () => upstream.destroy()).on("close", () => upstream.destroy());
    upstream.on("error", () => socket.destroy()).on("close", () => {
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref?.();
    });
    socket.pipe(upstream);
    upstream.pipe(socket);
  };

  const refuser = createRefuser();

  let listener: Listener | undefined;
  let closing: Promise<void> | undefined;

  return {
    get address() {
      return listener?.address;
    },
    async listen() {
      if (listener) {
        throw new Error(`Cannot listen on "${cfg.socket_address}": the server is listening already`);
      }
      h1Port = await new Promise<number>((resolve, reject) => {
        h1.once("error", reject);
        h1.listen(0, "127.0.0.1", () => {
          h1.off("error", reject);
          resolve((h1.address() as net.AddressInfo).port);
        });
      });
      listener = new Listener({
        socketAddress: cfg.socket_address,
        tls: cfg.tls ? await loadListenerTls(cfg.tls) : undefined,
        onHttp2: (socket) => h2.emit("connection", socket),
        onHttp1: toH1,
        onRefused: (socket, reason) => refuseClient(socket, reason, refuser),
        log,
      });
      try {
        return await listener.listen();
      } catch (err) {
        listener = undefined;
        await new Promise<void>((r) => h1.close(() => r()));
        throw err;
      }
    },
    close(graceMs = 5000) {
      closing ??= (async () => {
        if (!listener) return;
        const closed = listener.close();
        for (const s of sessions) if (!s.closed) s.close();
        const deadline = Date.now() + graceMs;
        while (Date.now() < deadline && (grpc.activeCalls > 0 || sessions.size > 0 || h1InFlight > 0)) {
          await delay(10);
        }
        if (grpc.activeCalls > 0 || h1InFlight > 0 || sessions.size > 0) {
          const reason = new ConnectError("The server is shutting down", ConnectCode.Unavailable);
          shutdown.abort(reason);
          grpc.abortAll(reason);
          await delay(20); // let the UNAVAILABLE trailers go out
        }
        for (const s of sessions) s.destroy();
        listener.destroyConnections();
        h1.closeAllConnections?.();
        await Promise.all([closed, new Promise<void>((r) => h1.close(() => r()))]);
      })();
      return closing;
    },
  };
}

/** Answers every call on a connection whose client certificate failed with UNAUTHENTICATED, then closes. */
function createRefuser(): http2.Http2Server {
  const refuser = http2.createServer();
  refuser.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.on("error", ignore);
    const reason = (stream.session && refusals.get(stream.session)) ?? "no valid client certificate";
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": "16",
      "grpc-message": percentEncode(`Client certificate refused: ${reason}`),
    }, { endStream: true });
    stream.session?.close();
  });
  refuser.on("session", (s: http2.ServerHttp2Session) => {
    s.on("error", ignore);
    refusals.set(s, pendingRefusal);
  });
  return refuser;
}

const refusals = new WeakMap<http2.Http2Session, string>();
/** The reason for the connection being handed to the refuser right now ('session' fires synchronously). */
let pendingRefusal = "";

function refuseClient(socket: TLSSocket, reason: string, refuser: http2.Http2Server): void {
  setTimeout(() => socket.destroy(), 5000).unref?.();
  if (socket.alpnProtocol === "h2") {
    pendingRefusal = reason;
    refuser.emit("connection", socket);
    return;
  }
  const body = `Client certificate refused: ${reason}\n`;
  socket.end(
    `HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${
      Buffer.byteLength(body)
    }\r\n\r\n${body}`,
  );
}

/** Default HTTP/2 flow-control windows (NativeLink's `experimental_http2_initial_*_window_size` override them). */
const DEFAULT_STREAM_WINDOW = 2 * 1024 * 1024;
const DEFAULT_CONNECTION_WINDOW = 16 * 1024 * 1024;

function http2Settings(cfg: HttpListenerConfig): http2.Settings {
  const a = cfg.advanced_http ?? {};
  // HTTP/2's default 64 KiB stream window starves large ByteStream uploads on loopback and LANs (the client
  // waits for WINDOW_UPDATEs); a few MiB keep the pipe full while bounding what one slow stream can buffer.
  const s: http2.Settings = {
    initialWindowSize: a.experimental_http2_initial_stream_window_size || DEFAULT_STREAM_WINDOW,
  };
  if (a.experimental_http2_max_frame_size) s.maxFrameSize = a.experimental_http2_max_frame_size;
  if (a.experimental_http2_max_concurrent_streams) {
    s.maxConcurrentStreams = a.experimental_http2_max_concurrent_streams;
  }
  if (a.experimental_http2_max_header_list_size) {
    s.maxHeaderListSize = a.experimental_http2_max_header_list_size;
  }
  return s;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function ignore(): void {}
