/**
 * The one gRPC client factory: a connect `Transport` speaking gRPC over HTTP/2 to an endpoint URI
 * (`grpc://`, `grpcs://`, `http://`, `https://`), with TLS/mTLS from NativeLink's `ClientTlsConfig` file
 * paths, headers sent with every call (`authorization`), HTTP/2 keep-alive pings and gzip. The grpc store,
 * the worker's worker-API client and the tests all build their clients here. Use it with connect-es
 * `createClient(Service, transport)`; {@linkcode createGrpcClient} also hands back the HTTP/2 session to
 * close it.
 *
 * @example
 * ```ts ignore
 * import { createClient } from "@connectrpc/connect";
 * import { createGrpcClientTransport } from "./grpc_client.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const health = createClient(Health, createGrpcClientTransport("grpc://127.0.0.1:50051"));
 * await health.check({});
 * ```
 * @module
 */
import type { SecureClientSessionOptions } from "node:http2";
import type { Transport } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { CairnError, Code } from "../util/error.ts";

/** Client TLS files, as NativeLink's `ClientTlsConfig`. */
export interface ClientTlsConfig {
  /** CA bundle to trust for the server (default: the system roots). */
  readonly ca_file?: string | undefined;
  /** Client certificate for mTLS. */
  readonly cert_file?: string | undefined;
  /** Client key for mTLS. */
  readonly key_file?: string | undefined;
  readonly use_native_roots?: boolean | undefined;
}

/** Options of {@linkcode createGrpcClientTransport}. */
export interface GrpcClientOptions {
  readonly tls?: ClientTlsConfig | undefined;
  /** Compress requests with gzip (responses are always accepted gzipped). */
  readonly gzip?: boolean | undefined;
  /** HTTP/2 keep-alive ping interval. */
  readonly pingIntervalMs?: number | undefined;
  /** How long a keep-alive ping may go unanswered before the connection is closed. */
  readonly pingTimeoutMs?: number | undefined;
  /** Headers sent with every call (e.g. `authorization: Bearer …`). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Close the HTTP/2 connection after this long without calls. */
  readonly idleConnectionTimeoutMs?: number | undefined;
  /** Deadline for calls that set none. */
  readonly defaultTimeoutMs?: number | undefined;
  /** Largest message accepted from the server. */
  readonly readMaxBytes?: number | undefined;
}

/** A gRPC client connection: the transport for `createClient`, and its HTTP/2 session to close. */
export interface GrpcClient {
  readonly transport: Transport;
  /** The HTTP/2 session manager; `abort()` closes the connection and fails its calls. */
  readonly session: Http2SessionManager;
}

/** Creates a gRPC transport to `uri` (`grpc://host:port`, `grpcs://host:port`, or an http(s) URL). */
export function createGrpcClientTransport(uri: string, options: GrpcClientOptions = {}): Transport {
  return createGrpcClient(uri, options).transport;
}

/** Like {@linkcode createGrpcClientTransport}, also handing back the HTTP/2 session. */
export function createGrpcClient(uri: string, options: GrpcClientOptions = {}): GrpcClient {
  const baseUrl = toBaseUrl(uri);
  const secure = baseUrl.startsWith("https:");
  const nodeOptions: SecureClientSessionOptions = {};
  const t = options.tls;
  if (t) {
    if (!secure) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot connect to "${uri}": tls_config needs a grpcs:// address`,
      );
    }
    if (t.ca_file) nodeOptions.ca = readFile(t.ca_file, "ca_file", uri);
    if (t.cert_file) nodeOptions.cert = readFile(t.cert_file, "cert_file", uri);
    if (t.key_file) nodeOptions.key = readFile(t.key_file, "key_file", uri);
    if ((t.cert_file === undefined) !== (t.key_file === undefined)) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot connect to "${uri}": cert_file and key_file go together`,
      );
    }
  }
  const session = new Http2SessionManager(baseUrl, {
    ...(options.pingIntervalMs !== undefined ? { pingIntervalMs: options.pingIntervalMs } : {}),
    ...(options.pingTimeoutMs !== undefined ? { pingTimeoutMs: options.pingTimeoutMs } : {}),
    ...(options.idleConnectionTimeoutMs !== undefined
      ? { idleConnectionTimeoutMs: options.idleConnectionTimeoutMs }
      : {}),
  }, nodeOptions);
  const headers = Object.entries(options.headers ?? {});
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: session,
    acceptCompression: [compressionGzip],
    ...(options.gzip ? { sendCompression: compressionGzip } : {}),
    ...(options.defaultTimeoutMs !== undefined ? { defaultTimeoutMs: options.defaultTimeoutMs } : {}),
    ...(options.readMaxBytes !== undefined ? { readMaxBytes: options.readMaxBytes } : {}),
    ...(headers.length > 0
      ? {
        interceptors: [(next) => (req) => {
          for (const [name, value] of headers) req.header.set(name, value);
          return next(req);
        }],
      }
      : {}),
  });
  return { transport, session };
}

/** `grpc://h:p` → `http://h:p`, `grpcs://h:p` → `https://h:p`; http(s) URLs pass unchanged. */
export function toBaseUrl(uri: string): string {
  const m = /^(grpcs?|https?):\/\/([^/]+)(\/.*)?$/.exec(uri.trim());
  if (!m) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot connect to "${uri}": the address must start with grpc://, grpcs://, http:// or https://`,
    );
  }
  const scheme = m[1] === "grpc" ? "http" : m[1] === "grpcs" ? "https" : m[1];
  return `${scheme}://${m[2]}${(m[3] ?? "").replace(/\/$/, "")}`;
}

function readFile(path: string, field: string, uri: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot connect to "${uri}": ${field} ${path} cannot be read`,
      {
        cause: err,
      },
    );
  }
}
