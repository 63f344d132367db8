/**
 * A connect `Transport` speaking gRPC over HTTP/2 to an endpoint URI (`grpc://`, `grpcs://`, `http://`,
 * `https://`), with TLS/mTLS from NativeLink's `ClientTlsConfig` file paths. Use it with connect-es
 * `createClient(Service, transport)`.
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
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
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
  /** Close the HTTP/2 connection after this long without calls. */
  readonly idleConnectionTimeoutMs?: number | undefined;
  /** Deadline for calls that set none. */
  readonly defaultTimeoutMs?: number | undefined;
  /** Largest message accepted from the server. */
  readonly readMaxBytes?: number | undefined;
}

/** Creates a gRPC transport to `uri` (`grpc://host:port`, `grpcs://host:port`, or an http(s) URL). */
export function createGrpcClientTransport(uri: string, options: GrpcClientOptions = {}): Transport {
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
  return createGrpcTransport({
    baseUrl,
    nodeOptions,
    acceptCompression: [compressionGzip],
    ...(options.gzip ? { sendCompression: compressionGzip } : {}),
    ...(options.pingIntervalMs !== undefined ? { pingIntervalMs: options.pingIntervalMs } : {}),
    ...(options.idleConnectionTimeoutMs !== undefined
      ? { idleConnectionTimeoutMs: options.idleConnectionTimeoutMs }
      : {}),
    ...(options.defaultTimeoutMs !== undefined ? { defaultTimeoutMs: options.defaultTimeoutMs } : {}),
    ...(options.readMaxBytes !== undefined ? { readMaxBytes: options.readMaxBytes } : {}),
  });
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
