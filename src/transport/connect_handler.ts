/**
 * Connect and gRPC-Web (and gRPC with JSON) for the same service bindings, through connect-node. Errors
 * keep their CairnError code and details. Browsers get CORS only for the origins the listener lists
 * (`cors_allowed_origins`; none by default), with the methods each route serves. Requests that are no RPC
 * fall through to `fallback` (the plain HTTP routes). A client hanging up mid-call is no server error: it
 * is counted (`client_gone`) and logged at debug level.
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
import { Code, ConnectError, cors, createConnectRouter, createContextValues } from "@connectrpc/connect";
import {
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import {
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import type { NodeRequest, NodeResponse } from "./http_routes.ts";
import { toConnectError } from "./grpc_status.ts";
import { countEvent } from "./guard.ts";
import { methodStats } from "./grpc_stats.ts";
import type { ServiceBinding, TransportLog } from "./types.ts";
import { kPeer, peerOf } from "./peer.ts";
import { endRpcSpan, setRequestAttributes, startRpcSpan, TRACING, withSpan } from "./rpc_tracing.ts";
import type { TraceSpan } from "../util/tracing.ts";

/** Options of {@linkcode createConnectHandler}. */
export interface ConnectHandlerOptions {
  readonly bindings: readonly ServiceBinding[];
  /** Serves what is not an RPC. Default: 404. */
  readonly fallback?: ((req: NodeRequest, res: NodeResponse) => void) | undefined;
  /** Accept gzip-compressed requests (and compress responses for clients that accept it). */
  readonly gzip?: boolean | undefined;
  readonly maxMessageBytes?: number | undefined;
  readonly shutdownSignal?: AbortSignal | undefined;
  /** Origins allowed cross-origin access (exact match on the `origin` header). Default none. */
  readonly corsAllowedOrigins?: readonly string[] | undefined;
  readonly log?: TransportLog | undefined;
}

/** Methods of the RPC routes (Connect unary GET included) and of the plain HTTP routes (Bazel's cache). */
const RPC_METHODS = "POST, GET";
const HTTP_METHODS = "GET, HEAD, PUT";
const ALLOW_HEADERS = cors.allowedHeaders.join(", ");
const EXPOSE_HEADERS = cors.exposedHeaders.join(", ");

/** Returns a Node request listener serving the bindings over Connect, gRPC-Web and gRPC(+json). */
export function createConnectHandler(
  options: ConnectHandlerOptions,
): (req: NodeRequest, res: NodeResponse) => void {
  const router = createConnectRouter({
    acceptCompression: options.gzip ? [compressionGzip] : [],
    readMaxBytes: options.maxMessageBytes ?? 4 * 1024 * 1024,
    ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
  });
  for (const b of options.bindings) router.service(b.service, wrapImpl(b.service, b.impl));
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const fallback = options.fallback ?? notFound;
  const origins = new Set(options.corsAllowedOrigins ?? []);
  const log = options.log;
  return (req, res) => {
    const path = req.url?.split("?", 2)[0] ?? "";
    const handler = paths.get(path);
    const origin = req.headers.origin;
    if (origin !== undefined && origins.has(origin)) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("vary", "origin");
      res.setHeader("access-control-expose-headers", EXPOSE_HEADERS);
      if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
        const requested = req.headers["access-control-request-headers"];
        res.setHeader("access-control-allow-methods", handler ? RPC_METHODS : HTTP_METHODS);
        res.setHeader(
          "access-control-allow-headers",
          requested ? `${ALLOW_HEADERS}, ${requested}` : ALLOW_HEADERS,
        );
        res.setHeader("access-control-max-age", "7200");
        res.statusCode = 204;
        res.end();
        return;
      }
    } else if (origin !== undefined && req.method === "OPTIONS") {
      // A preflight from an origin not listed: no CORS headers, so the browser refuses the real request.
      res.statusCode = 204;
      res.end();
      return;
    }
    if (!handler) return fallback(req, res);
    const uReq = universalRequestFromNodeRequest(
      // deno-lint-ignore no-explicit-any
      req as any,
      // deno-lint-ignore no-explicit-any
      res as any,
      undefined,
      createContextValues().set(kPeer, peerOf(req.socket as never)),
    );
    handler(uReq)
      .then((uRes) =>
        universalResponseToNodeResponse(uRes, res as Parameters<typeof universalResponseToNodeResponse>[1])
      )
      .catch((reason: unknown) => {
        const code = ConnectError.from(reason).code;
        if (code === Code.Aborted || code === Code.Canceled || res.destroyed || req.destroyed) {
          countEvent("client_gone");
          log?.debug(`Connect ${handler.method.name}: the client went away (${(reason as Error)?.message})`);
          return;
        }
        (log ?? console).error(`Connect ${handler.service.typeName}.${handler.method.name} failed:`, reason);
      });
  };
}

/** Options of {@linkcode createConnectFetchHandler}: as the Node handler's, with a web fallback. */
export interface ConnectFetchHandlerOptions extends Omit<ConnectHandlerOptions, "fallback"> {
  /** Serves what is not an RPC (the plain HTTP routes). */
  readonly fallback: (request: Request) => Promise<Response> | Response;
}

/**
 * The same Connect / gRPC-Web / CORS serving as {@linkcode createConnectHandler}, as a web
 * `Request → Response` handler (the `Deno.serve` server path).
 */
export function createConnectFetchHandler(
  options: ConnectFetchHandlerOptions,
): (request: Request) => Promise<Response> {
  const router = createConnectRouter({
    acceptCompression: options.gzip ? [compressionGzip] : [],
    readMaxBytes: options.maxMessageBytes ?? 4 * 1024 * 1024,
    ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
  });
  for (const b of options.bindings) router.service(b.service, wrapImpl(b.service, b.impl));
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const origins = new Set(options.corsAllowedOrigins ?? []);
  const log = options.log;
  return async (request) => {
    const url = new URL(request.url);
    const handler = paths.get(url.pathname);
    const origin = request.headers.get("origin");
    const cors: [string, string][] = [];
    if (origin !== null && origins.has(origin)) {
      cors.push(["access-control-allow-origin", origin], ["vary", "origin"], [
        "access-control-expose-headers",
        EXPOSE_HEADERS,
      ]);
      if (request.method === "OPTIONS" && request.headers.has("access-control-request-method")) {
        const requested = request.headers.get("access-control-request-headers");
        cors.push(
          ["access-control-allow-methods", handler ? RPC_METHODS : HTTP_METHODS],
          ["access-control-allow-headers", requested ? `${ALLOW_HEADERS}, ${requested}` : ALLOW_HEADERS],
          ["access-control-max-age", "7200"],
        );
        return new Response(null, { status: 204, headers: cors });
      }
    } else if (origin !== null && request.method === "OPTIONS") {
      return new Response(null, { status: 204 });
    }
    let response: Response;
    if (!handler) {
      response = await options.fallback(request);
    } else {
      try {
        const uRes = await handler(universalServerRequestFromFetch(request, {}));
        response = universalServerResponseToFetch(uRes);
      } catch (reason) {
        const code = ConnectError.from(reason).code;
        if (code === Code.Aborted || code === Code.Canceled) {
          countEvent("client_gone");
          log?.debug(`Connect ${handler.method.name}: the client went away (${(reason as Error)?.message})`);
        } else {
          (log ?? console).error(
            `Connect ${handler.service.typeName}.${handler.method.name} failed:`,
            reason,
          );
        }
        return new Response(null, { status: 500 });
      }
    }
    if (cors.length > 0) {
      // Route responses may have immutable headers (e.g. from fetch): copy into a fresh response.
      const headers = new Headers(response.headers);
      for (const [k, v] of cors) headers.set(k, v);
      response = new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    }
    return response;
  };
}

function notFound(_req: NodeRequest, res: NodeResponse): void {
  res.statusCode = 404;
  res.end();
}

type AnyFn = (request: unknown, context: unknown) => unknown;

/** Iterates `messages` with `span` active while each is produced (a generator runs in its caller's context). */
async function* inSpanEach(span: TraceSpan, messages: AsyncIterable<unknown>): AsyncGenerator<unknown> {
  const it = withSpan(span, () => messages[Symbol.asyncIterator]());
  let done = false;
  try {
    for (;;) {
      const r = await withSpan(span, () => it.next());
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!done) await it.return?.();
  }
}

/**
 * Wraps every method so a thrown CairnError reaches connect as a ConnectError with the same code, and each
 * call is counted with the gRPC ones (`cairn_grpc_server_*`, `nativelink_request_*`) by method and code.
 */
// deno-lint-ignore no-explicit-any
function wrapImpl(service: ServiceBinding["service"], impl: ServiceBinding["impl"]): any {
  const out: Record<string, AnyFn> = {};
  for (const m of service.methods) {
    const fn = impl[m.localName];
    if (typeof fn !== "function") continue;
    const bound = (fn as AnyFn).bind(impl);
    const stats = methodStats(`/${service.typeName}/${m.name}`);
    const finish = (started: number, err: unknown, span?: TraceSpan) => {
      const code = err === undefined ? 0 : ConnectError.from(err).code;
      stats.record(code, (performance.now() - started) / 1000);
      if (span !== undefined) {
        endRpcSpan(span, code, err === undefined ? undefined : ConnectError.from(err).rawMessage);
      }
    };
    // With tracing on, each call runs inside its RPC span (rpc_tracing.ts).
    const traced = (request: unknown, context: unknown): TraceSpan | undefined => {
      if (!TRACING) return undefined;
      const span = startRpcSpan(
        service.typeName,
        m.name,
        (context as { requestHeader?: Headers }).requestHeader?.get("traceparent") ?? undefined,
      );
      setRequestAttributes(span, request);
      return span;
    };
    if (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming") {
      out[m.localName] = async function* (request, context) {
        const started = performance.now();
        const span = traced(request, context);
        let failure: unknown;
        try {
          if (span === undefined) yield* bound(request, context) as AsyncIterable<unknown>;
          else yield* inSpanEach(span, bound(request, context) as AsyncIterable<unknown>);
        } catch (err) {
          failure = toConnectError(err);
          throw failure;
        } finally {
          finish(started, failure, span);
        }
      };
    } else {
      out[m.localName] = async (request, context) => {
        const started = performance.now();
        const span = traced(request, context);
        try {
          const result = await (span === undefined
            ? bound(request, context)
            : withSpan(span, () =>
              bound(request, context)));
          finish(started, undefined, span);
          return result;
        } catch (err) {
          const e = toConnectError(err);
          finish(started, e, span);
          throw e;
        }
      };
    }
  }
  return out;
}
