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
import { createDenoServeServer } from "./deno_serve_server.ts";
import { createStreamIntake } from "./stream_intake.ts";
import { GrpcHandler } from "./grpc_handler.ts";
import { createHttpRoutesHandler, type NodeRequest, type NodeResponse } from "./http_routes.ts";
import { type BoundAddress, Listener } from "./listener.ts";
import { loadListenerTls } from "./tls.ts";
import { percentEncode } from "./grpc_status.ts";
import {
  countEvent,
  guarded,
  installClientErrorGuard,
  type ResolvedLimits,
  resolveLimits,
  UploadAdmission,
} from "./guard.ts";
import { relayPeer } from "./peer.ts";
import { createH1Relay } from "./deno_compat/mod.ts";
import {
  CONSOLE_TRANSPORT_LOG,
  type HttpListenerConfig,
  type HttpRoute,
  type ServiceBinding,
  type TransportLog,
} from "./types.ts";
import { delay } from "../util/async.ts";

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

/**
 * The server path of `listener`: its `server` field, else the `CAIRN_SERVER_PATH` environment variable
 * (tests run the transport suites on both paths with it; ignored for mTLS listeners, which need
 * `node_http2`), else `node_http2`.
 */
export function serverPathOf(listener: HttpListenerConfig): "node_http2" | "deno_serve" {
  if (listener.server !== undefined) return listener.server;
  let env: string | undefined;
  try {
    env = Deno.env.get("CAIRN_SERVER_PATH");
  } catch { /* no env permission */ }
  const mtls = listener.tls?.client_ca_file !== undefined || listener.tls?.verify_client === true;
  return env === "deno_serve" && !mtls ? "deno_serve" : "node_http2";
}

/**
 * New streams started per event-loop turn before the rest wait for the next one (round-robin over
 * connections): a burst of thousands of streams on a few connections cannot hold up everyone else's calls.
 */
const STREAMS_STARTED_PER_TURN = 32;

/** Creates a server for `bindings` and `routes` on `listener`. Nothing is bound until `listen()`. */
export function createCairnServer(options: CairnServerOptions): CairnServer {
  if (serverPathOf(options.listener) === "deno_serve") return createDenoServeServer(options);
  const log = options.log ?? CONSOLE_TRANSPORT_LOG;
  const cfg = options.listener;
  const accepted = cfg.compression?.accepted_compression_algorithms ?? [];
  const limits = resolveLimits(cfg);
  const maxMessageBytes = limits.maxMessageBytes;
  const uploads = new UploadAdmission(limits);
  const shutdown = new AbortController();

  const grpc = new GrpcHandler({
    bindings: options.bindings,
    sendCompression: cfg.compression?.send_compression_algorithm,
    acceptCompression: accepted,
    maxMessageBytes,
    log,
    admitUpload: (stream) => stream.session ? uploads.admit(stream.session) : undefined,
    requestIdleMs: limits.uploadIdleMs,
    // node:http2 streams are done with a written chunk by its write callback.
    releasesPieces: true,
  });
  const connect = createConnectHandler({
    bindings: options.bindings,
    fallback: createHttpRoutesHandler(options.routes ?? [], log, { bodyIdleMs: limits.uploadIdleMs }),
    gzip: accepted.includes("gzip"),
    maxMessageBytes,
    shutdownSignal: shutdown.signal,
    corsAllowedOrigins: cfg.cors_allowed_origins ?? [],
    log,
  });
  /** Serves a plain HTTP / Connect / gRPC-Web request; request bodies count as uploads of `connection`. */
  const serveHttp = (req: NodeRequest, res: NodeResponse, connection: object) => {
    if (req.method === "PUT" || req.method === "POST") {
      const release = uploads.admit(connection);
      if (release === undefined) {
        res.once("close", () => req.destroy?.());
        if (res instanceof http.ServerResponse) res.shouldKeepAlive = false;
        (res as http.ServerResponse).writeHead(503, {
          "content-type": "text/plain; charset=utf-8",
          "retry-after": "1",
        });
        res.end("Too many uploads in flight (limits.max_uploads_per_connection / limits.max_uploads)\n");
        return;
      }
      res.once("close", release);
    }
    connect(req, res);
  };

  const sessions = new Set<http2.ServerHttp2Session>();
  const intake = createStreamIntake(STREAMS_STARTED_PER_TURN);
  const h2 = http2.createServer({ settings: http2Settings(cfg, limits), maxSessionMemory: 64 });
  h2.on(
    "stream",
    guarded(log, "HTTP/2 stream", (
      stream: http2.ServerHttp2Stream,
      headers: http2.IncomingHttpHeaders,
      _flags: number,
      rawHeaders: string[],
    ) => {
      stream.on("error", ignore);
      const session = stream.session as http2.ServerHttp2Session | undefined;
      if (session === undefined || session.destroyed) return;
      trackStream(session, stream);
      // Started fairly: a connection that opens thousands of streams at once waits its turn (stream_intake.ts).
      intake.admit(session, () => startStream(stream, headers, rawHeaders, session));
    }),
  );
  const startStream = guarded(log, "HTTP/2 stream", (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rawHeaders: string[],
    session: http2.ServerHttp2Session,
  ) => {
    if (stream.destroyed || stream.closed || session.destroyed) return;
    if (GrpcHandler.accepts(headers["content-type"])) return grpc.handle(stream, headers);
    const req = new http2.Http2ServerRequest(stream, headers, undefined as never, rawHeaders as never);
    const res = new http2.Http2ServerResponse(stream);
    serveHttp(req, res, session);
  });

  /** Per-session defences: no stream by the header timeout or none for the idle timeout → GOAWAY; rapid resets. */
  interface SessionState {
    streams: number;
    everStreamed: boolean;
    timer: ReturnType<typeof setTimeout> | undefined;
    resetWindowStart: number;
    resets: number;
  }
  const states = new WeakMap<http2.ServerHttp2Session, SessionState>();
  const goAway = (session: http2.ServerHttp2Session, code: number, event: string, graceMs = 1000) => {
    countEvent(event);
    try {
      if (!session.destroyed) session.goaway(code);
    } catch { /* gone */ }
    try {
      if (!session.destroyed) session.close();
    } catch { /* gone */ }
    // A peer that does not close after GOAWAY is dropped.
    setTimeout(() => {
      if (!session.destroyed) session.destroy();
    }, graceMs).unref?.();
  };
  const armIdle = (session: http2.ServerHttp2Session, st: SessionState) => {
    if (st.timer !== undefined) clearTimeout(st.timer);
    const ms = st.everStreamed ? limits.idleConnectionMs : limits.headerTimeoutMs;
    st.timer = setTimeout(() => {
      st.timer = undefined;
      if (st.streams === 0 && !session.destroyed) {
        goAway(
          session,
          http2.constants.NGHTTP2_NO_ERROR,
          st.everStreamed ? "idle_connection_closed" : "header_timeout",
        );
      }
    }, ms);
  };
  /** Counts a reset stream of `session`; past `max_resets_per_second` the session gets GOAWAY (true). */
  const noteReset = (session: http2.ServerHttp2Session): boolean => {
    const st = states.get(session);
    if (st === undefined || session.destroyed) return true;
    const now = Date.now();
    if (now - st.resetWindowStart >= 1000) {
      st.resetWindowStart = now;
      st.resets = 0;
    }
    if (++st.resets <= limits.maxResetsPerSecond) return false;
    if (st.resets === limits.maxResetsPerSecond + 1) {
      // An abusive peer gets no grace: whatever it still sends is not worth reading.
      goAway(session, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, "rapid_reset_goaway", 50);
    }
    return true;
  };
  const trackStream = (session: http2.ServerHttp2Session, stream: http2.ServerHttp2Stream) => {
    const st = states.get(session);
    if (st === undefined) return;
    st.streams++;
    st.everStreamed = true;
    if (st.timer !== undefined) {
      clearTimeout(st.timer);
      st.timer = undefined;
    }
    stream.once(
      "close",
      guarded(log, "HTTP/2 stream close", () => {
        st.streams--;
        if (session.destroyed) return;
        if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
          if (noteReset(session)) return;
        }
        if (st.streams === 0 && !session.closed) armIdle(session, st);
      }),
    );
  };

  h2.on(
    "session",
    guarded(log, "HTTP/2 session", (session: http2.ServerHttp2Session) => {
      sessions.add(session);
      session.on("error", ignore);
      const st: SessionState = {
        streams: 0,
        everStreamed: false,
        timer: undefined,
        resetWindowStart: 0,
        resets: 0,
      };
      states.set(session, st);
      armIdle(session, st);
      const connectionWindow = cfg.advanced_http?.experimental_http2_initial_connection_window_size ||
        DEFAULT_CONNECTION_WINDOW;
      session.once(
        "connect",
        guarded(log, "HTTP/2 session connect", () => {
          if (!session.destroyed && !session.closed) session.setLocalWindowSize(connectionWindow);
        }),
      );
      // Keep-alive pings every `http2_keep_alive_interval` s; one not answered within
      // `experimental_http2_keep_alive_timeout_s` (default 20 s) closes the connection. A timeout given alone
      // turns pings on every 60 s.
      const keepAliveTimeoutS = cfg.advanced_http?.experimental_http2_keep_alive_timeout_s;
      const keepAlive = cfg.advanced_http?.http2_keep_alive_interval || (keepAliveTimeoutS ? 60 : 0);
      const keepAliveTimeoutMs = (keepAliveTimeoutS || 20) * 1000;
      const pinger = keepAlive
        ? setInterval(() => {
          try {
            if (session.closed || session.destroyed) return;
            const deadline = setTimeout(() => {
              if (!session.destroyed) session.destroy();
            }, keepAliveTimeoutMs);
            if (!session.ping(() => clearTimeout(deadline))) clearTimeout(deadline);
          } catch { /* gone meanwhile */ }
        }, keepAlive * 1000)
        : undefined;
      session.once("close", () => {
        sessions.delete(session);
        if (st.timer !== undefined) clearTimeout(st.timer);
        if (pinger !== undefined) clearInterval(pinger);
      });
    }),
  );
  h2.on("sessionError", (err) => log.debug(`HTTP/2 session error: ${err.message}`));

  // HTTP/1.1 connections reach `h1` through the relay of deno_compat/h1_relay.ts (why: see there); handlers see
  // the client's own socket (address, TLS) through `peerSocket`.
  let h1InFlight = 0;
  const h1 = http.createServer((req, res) => {
    const outer = relayPeer(req.socket);
    if (outer === undefined) {
      countEvent("h1_foreign_connection_refused");
      req.socket.destroy();
      return;
    }
    h1InFlight++;
    const watch = relay.watchOf(outer);
    watch?.requestStarted();
    res.once("close", () => {
      h1InFlight--;
      watch?.requestDone();
    });
    serveHttp(req as NodeRequest, res as NodeResponse, outer);
  });
  h1.on("clientError", (err: Error & { code?: string }, socket: net.Socket) => {
    // A malformed request or oversized header gets its status before the connection goes.
    const status = err.code === "HPE_HEADER_OVERFLOW"
      ? "431 Request Header Fields Too Large"
      : err.code === "ECONNRESET" || err.code === "EPIPE"
      ? undefined
      : "400 Bad Request";
    if (status !== undefined && socket.writable) {
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      setTimeout(() => socket.destroy(), 1000).unref?.();
    } else {
      socket.destroy();
    }
  });
  h1.keepAliveTimeout = limits.idleConnectionMs;
  h1.headersTimeout = limits.headerTimeoutMs;
  h1.requestTimeout = 0;
  const relay = createH1Relay(h1, limits);

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
      installClientErrorGuard(log);
      await relay.listen();
      listener = new Listener({
        socketAddress: cfg.socket_address,
        tls: cfg.tls ? await loadListenerTls(cfg.tls) : undefined,
        onHttp2: guarded(log, "HTTP/2 connection", (socket: net.Socket) => h2.emit("connection", socket)),
        onHttp1: guarded(log, "HTTP/1.1 connection", relay.relay),
        onRefused: guarded(
          log,
          "refused TLS connection",
          (socket: TLSSocket, reason: string) => refuseClient(socket, reason, refuser),
        ),
        sniffTimeoutMs: limits.headerTimeoutMs,
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
        for (const s of sessions) {
          try {
            if (!s.closed) s.close();
          } catch { /* gone meanwhile */ }
        }
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
        for (const s of sessions) {
          try {
            s.destroy();
          } catch { /* gone meanwhile */ }
        }
        intake.clear();
        grpc.close();
        listener.destroyConnections();
        h1.closeAllConnections?.();
        await Promise.all([closed, new Promise<void>((r) => h1.close(() => r()))]);
      })();
      return closing;
    },
  };
}

/**
 * Answers every request on an HTTP/2 connection whose client certificate failed, then closes: gRPC calls
 * get UNAUTHENTICATED, other requests (Connect, gRPC-Web, plain HTTP) HTTP 401.
 */
function createRefuser(): http2.Http2Server {
  const refuser = http2.createServer();
  refuser.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("error", ignore);
    const reason = (stream.session && refusals.get(stream.session)) ?? "no valid client certificate";
    const message = `Client certificate refused: ${reason}`;
    try {
      if (GrpcHandler.accepts(headers["content-type"])) {
        stream.respond({
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": "16",
          "grpc-message": percentEncode(message),
        }, { endStream: true });
      } else {
        stream.respond({ ":status": 401, "content-type": "text/plain; charset=utf-8" });
        stream.end(`${message}\n`);
      }
      stream.session?.close();
    } catch { /* the client went away */ }
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

function http2Settings(cfg: HttpListenerConfig, limits: ResolvedLimits): http2.Settings {
  const a = cfg.advanced_http ?? {};
  // HTTP/2's default 64 KiB stream window starves large ByteStream uploads on loopback and LANs (the client
  // waits for WINDOW_UPDATEs); a few MiB keep the pipe full while bounding what one slow stream can buffer.
  const s: http2.Settings = {
    initialWindowSize: a.experimental_http2_initial_stream_window_size || DEFAULT_STREAM_WINDOW,
    // Bounds what one connection may open at once (and so what it may make the server buffer).
    maxConcurrentStreams: limits.maxConcurrentStreams,
  };
  if (a.experimental_http2_max_frame_size) s.maxFrameSize = a.experimental_http2_max_frame_size;
  if (a.experimental_http2_max_header_list_size) {
    s.maxHeaderListSize = a.experimental_http2_max_header_list_size;
  }
  return s;
}

function ignore(): void {}
