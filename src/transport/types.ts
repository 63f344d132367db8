/**
 * The seam between services and the wire.
 *
 * A service is a connect-es `ServiceImpl` (methods take `(request, HandlerContext)`), written once. The
 * transport serves every binding over plain gRPC (a thin envelope layer on `node:http2` streams, the hot
 * path) and over Connect and gRPC-Web (connect-node). Plain HTTP endpoints (health JSON, Bazel's HTTP
 * cache) are web-standard `Request → Response` handlers.
 *
 * @example
 * ```ts
 * import type { ServiceBinding } from "./types.ts";
 * import { bindService } from "./bind_service.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const binding: ServiceBinding = bindService(Health, { check: async () => ({ status: 1 }) });
 * ```
 * @module
 */
import type { DescService } from "@bufbuild/protobuf";
import { createContextKey, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { PeerInfo } from "./peer.ts";

/**
 * A unary method working on encoded messages: the request's bytes in, the response's bytes out. The gRPC
 * fast path prefers it over the impl's method (no decode and re-encode of a stored response); it must
 * answer exactly as that method does. Decode errors should be INVALID_ARGUMENT, as with `decodeRequest`.
 */
export type EncodedUnary = (request: Uint8Array, context: HandlerContext) => Promise<Uint8Array> | Uint8Array;

/**
 * A server-streaming method working on encoded messages: each item is one response message as byte pieces
 * (written one after another behind the frame header, so large payloads are never copied into a message).
 * The pieces must stay unchanged until the transport asks for the next message; when the context's
 * {@linkcode kReleasesPieces} is true, the transport is done with them by then and their buffers may be
 * filled again.
 */
export type EncodedServerStream = (
  request: Uint8Array,
  context: HandlerContext,
) => AsyncIterable<readonly Uint8Array[]>;

/**
 * Context value of a server-streaming call: true when the transport is done with a message's pieces (has
 * copied or sent them) once it asks for the next message, so a producer may reuse their buffers.
 */
export const kReleasesPieces = createContextKey<boolean>(false, { description: "cairn.releasesPieces" });

/** One RPC service and its implementation (build one with `bindService`). */
export interface ServiceBinding {
  readonly service: DescService;
  // deno-lint-ignore no-explicit-any
  readonly impl: Partial<ServiceImpl<any>>;
  /** Encoded-bytes versions of unary or server-streaming methods, by local name (`getActionResult`), for gRPC. */
  readonly encoded?: Readonly<Record<string, EncodedUnary | EncodedServerStream>>;
}

/**
 * A plain HTTP route. Returns `undefined` when the request is not its own so the next route may take it.
 * The request body is a stream; large bodies must be streamed, not buffered. `peer` says who is calling
 * (a verified client certificate), when the transport knows.
 */
export type HttpRoute = (
  request: Request,
  peer?: PeerInfo,
) => Promise<Response | undefined> | Response | undefined;

/** TLS of a listener (NativeLink's `tls`; `ca_file` + `verify_client` is the older spelling of mTLS). */
export interface ListenerTlsConfig {
  readonly cert_file: string;
  readonly key_file: string;
  /** CA that client certificates must chain to; setting it turns on mTLS. */
  readonly client_ca_file?: string | undefined;
  readonly client_crl_file?: string | undefined;
  readonly ca_file?: string | undefined;
  readonly verify_client?: boolean | undefined;
}

/** Per-listener gRPC compression. */
export interface ListenerCompressionConfig {
  /** Compress responses with this (when the client accepts it). */
  readonly send_compression_algorithm?: "gzip" | "none" | undefined;
  /** Request encodings accepted besides identity. */
  readonly accepted_compression_algorithms?: readonly ("gzip" | "none")[] | undefined;
}

/** The HTTP/2 tuning knobs the transport honours (NativeLink's `advanced_http`). */
export interface ListenerAdvancedHttpConfig {
  readonly http2_keep_alive_interval?: number | undefined;
  readonly experimental_http2_keep_alive_timeout_s?: number | undefined;
  readonly experimental_http2_initial_stream_window_size?: number | undefined;
  readonly experimental_http2_initial_connection_window_size?: number | undefined;
  readonly experimental_http2_max_frame_size?: number | undefined;
  readonly experimental_http2_max_concurrent_streams?: number | undefined;
  readonly experimental_http2_max_header_list_size?: number | undefined;
}

/** The canonical HTTP listener of a server, as NativeLink's `HttpListener` (snake_case). */
export interface HttpListenerConfig {
  /** `host:port`, `[v6]:port` or `:port` (all interfaces). Port 0 picks a free port. */
  readonly socket_address: string;
  readonly tls?: ListenerTlsConfig | undefined;
  readonly compression?: ListenerCompressionConfig | undefined;
  readonly advanced_http?: ListenerAdvancedHttpConfig | undefined;
  /** Largest accepted (decompressed) gRPC message in bytes. Default 8 MiB (a full 4 MiB batch plus its framing fits). */
  readonly max_decoding_message_size?: number | undefined;
  /** Origins allowed cross-origin access (exact `scheme://host[:port]`). Default none. */
  readonly cors_allowed_origins?: readonly string[] | undefined;
  readonly limits?: ListenerLimits | undefined;
  /** The HTTP server under the listener: `node_http2` (default) or `deno_serve`. */
  readonly server?: "node_http2" | "deno_serve" | undefined;
}

/** Resource limits of a listener against abusive clients; absent or 0 → the default. */
export interface ListenerLimits {
  /** Uploads (client-streaming gRPC calls, HTTP request bodies) at once per connection. Default 64. */
  readonly max_uploads_per_connection?: number | undefined;
  /** Uploads at once on the listener. Default 1024. */
  readonly max_uploads?: number | undefined;
  /** Seconds an upload may send nothing before it is ended. Default 30. */
  readonly upload_idle_timeout_s?: number | undefined;
  /** Seconds a new connection has to send its first request's headers. Default 10. */
  readonly header_timeout_s?: number | undefined;
  /** Seconds a connection without requests in flight is kept open. Default 120. */
  readonly idle_connection_timeout_s?: number | undefined;
  /** Streams one HTTP/2 connection may reset per second before it gets GOAWAY. Default 200. */
  readonly max_resets_per_second?: number | undefined;
}

/** Where the transport reports what it cannot hand back to a caller. `console` fits. */
export interface TransportLog {
  debug(message: string, ...data: unknown[]): void;
  warn(message: string, ...data: unknown[]): void;
  error(message: string, ...data: unknown[]): void;
}

/** The log a transport uses when none is given: warnings and errors to the console, no debug. */
export const CONSOLE_TRANSPORT_LOG: TransportLog = {
  debug: () => {},
  warn: (m, ...d) => console.warn(m, ...d),
  error: (m, ...d) => console.error(m, ...d),
};
