/**
 * Connect and gRPC-Web (and gRPC with JSON) for the same service bindings, through connect-node. Errors
 * keep their CairnError code and details; browsers get permissive CORS. Requests that are no RPC fall
 * through to `fallback` (the plain HTTP routes).
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import { createConnectHandler } from "./connect_handler.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * http.createServer(createConnectHandler({ bindings: [{ service: Health, impl: { check: () => ({ status: 1 }) } }] }));
 * ```
 * @module
 */
import { cors, createContextValues } from "@connectrpc/connect";
import {
  compressionGzip,
  connectNodeAdapter,
  type ConnectNodeAdapterOptions,
} from "@connectrpc/connect-node";
import type { NodeRequest, NodeResponse } from "./http_routes.ts";
import { toConnectError } from "./grpc_status.ts";
import type { ServiceBinding } from "./types.ts";
import { kPeer, peerOf } from "./peer.ts";

/** Options of {@linkcode createConnectHandler}. */
export interface ConnectHandlerOptions {
  readonly bindings: readonly ServiceBinding[];
  /** Serves what is not an RPC. Default: 404. */
  readonly fallback?: ((req: NodeRequest, res: NodeResponse) => void) | undefined;
  /** Accept gzip-compressed requests (and compress responses for clients that accept it). */
  readonly gzip?: boolean | undefined;
  readonly maxMessageBytes?: number | undefined;
  readonly shutdownSignal?: AbortSignal | undefined;
}

const ALLOW_METHODS = cors.allowedMethods.join(", ");
const ALLOW_HEADERS = cors.allowedHeaders.join(", ");
const EXPOSE_HEADERS = cors.exposedHeaders.join(", ");

/** Returns a Node request listener serving the bindings over Connect, gRPC-Web and gRPC(+json). */
export function createConnectHandler(
  options: ConnectHandlerOptions,
): (req: NodeRequest, res: NodeResponse) => void {
  const adapter = connectNodeAdapter({
    routes: (router) => {
      for (const b of options.bindings) router.service(b.service, wrapImpl(b.service.methods, b.impl));
    },
    ...(options.fallback
      ? { fallback: options.fallback as NonNullable<ConnectNodeAdapterOptions["fallback"]> }
      : {}),
    acceptCompression: options.gzip ? [compressionGzip] : [],
    readMaxBytes: options.maxMessageBytes ?? 4 * 1024 * 1024,
    ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
    contextValues: (req) => createContextValues().set(kPeer, peerOf(req.socket)),
  });
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      res.setHeader("access-control-allow-origin", "*");
      res.setHeader("access-control-expose-headers", EXPOSE_HEADERS);
      if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
        const requested = req.headers["access-control-request-headers"];
        res.setHeader("access-control-allow-methods", ALLOW_METHODS);
        res.setHeader(
          "access-control-allow-headers",
          requested ? `${ALLOW_HEADERS}, ${requested}` : ALLOW_HEADERS,
        );
        res.setHeader("access-control-max-age", "7200");
        res.statusCode = 204;
        res.end();
        return;
      }
    }
    adapter(req as Parameters<typeof adapter>[0], res as Parameters<typeof adapter>[1]);
  };
}

type AnyFn = (request: unknown, context: unknown) => unknown;

/** Wraps every method so a thrown CairnError reaches connect as a ConnectError with the same code. */
// deno-lint-ignore no-explicit-any
function wrapImpl(methods: ServiceBinding["service"]["methods"], impl: ServiceBinding["impl"]): any {
  const out: Record<string, AnyFn> = {};
  for (const m of methods) {
    const fn = impl[m.localName];
    if (typeof fn !== "function") continue;
    const bound = (fn as AnyFn).bind(impl);
    if (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming") {
      out[m.localName] = async function* (request, context) {
        try {
          yield* bound(request, context) as AsyncIterable<unknown>;
        } catch (err) {
          throw toConnectError(err);
        }
      };
    } else {
      out[m.localName] = async (request, context) => {
        try {
          return await bound(request, context);
        } catch (err) {
          throw toConnectError(err);
        }
      };
    }
  }
  return out;
}
