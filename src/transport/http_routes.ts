/**
 * Serves plain HTTP routes (web `Request → Response` handlers) on Node's HTTP/1.1 and HTTP/2 compat
 * request/response objects, streaming bodies both ways with back-pressure. The first route that returns a
 * response wins; none → 404.
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import { createHttpRoutesHandler } from "./http_routes.ts";
 * const handler = createHttpRoutesHandler([(req) => new URL(req.url).pathname === "/status" ? new Response("ok") : undefined]);
 * http.createServer(handler);
 * ```
 * @module
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { CairnError, Code } from "../util/error.ts";
import { countEvent } from "./guard.ts";
import { peerSocket } from "./peer.ts";
import type { HttpRoute, TransportLog } from "./types.ts";
import { peerOf } from "./peer.ts";

/** A Node request from node:http or the node:http2 compat layer. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
/** A Node response from node:http or the node:http2 compat layer. */
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** Options of {@linkcode createHttpRoutesHandler}. */
export interface HttpRoutesOptions {
  /**
   * A request body that sends no byte for this long while its route waits for one ends the request (408,
   * connection closed). Default 30 s.
   */
  readonly bodyIdleMs?: number | undefined;
}

/** Returns a Node request listener that serves `routes`. */
export function createHttpRoutesHandler(
  routes: readonly HttpRoute[],
  log?: TransportLog,
  options: HttpRoutesOptions = {},
): (req: NodeRequest, res: NodeResponse) => void {
  const bodyIdleMs = options.bodyIdleMs ?? 30_000;
  return (req, res) => {
    serveRoutes(routes, req, res, bodyIdleMs).catch((err) => {
      if (res.destroyed || (err as { name?: string })?.name === "AbortError") {
        countEvent("client_gone");
        log?.debug(`HTTP ${req.method} ${req.url}: the client went away`);
        return;
      }
      log?.warn(`HTTP ${req.method} ${req.url} failed:`, err);
      if (!res.headersSent) {
        const e = CairnError.from(err);
        (res as ServerResponse).writeHead(httpStatusOf(e.code), {
          "content-type": "text/plain; charset=utf-8",
        });
        res.end(`${e.message}\n`);
      } else {
        res.destroy();
      }
    });
  };
}

async function serveRoutes(
  routes: readonly HttpRoute[],
  req: NodeRequest,
  res: NodeResponse,
  bodyIdleMs: number,
): Promise<void> {
  const abort = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) abort.abort(new DOMException("The client went away", "AbortError"));
  });
  const request = toWebRequest(req, res, abort.signal, bodyIdleMs);
  for (const route of routes) {
    const response = await route(request, peerOf(req.socket as never));
    if (response !== undefined) {
      return await writeWebResponse(response, req.method === "HEAD", res, abort.signal);
    }
  }
  if (request.body && !request.bodyUsed) await request.body.cancel().catch(() => {});
  (res as ServerResponse).writeHead(404, { "content-type": "text/plain; charset=utf-8" });
  res.end(`Not found: ${req.method} ${new URL(request.url).pathname}\n`);
}

function toWebRequest(req: NodeRequest, res: NodeResponse, signal: AbortSignal, bodyIdleMs: number): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    headers.append(name, raw[i + 1]!);
  }
  const authority = req.headers.host ?? (req.headers as Record<string, string | undefined>)[":authority"] ??
    "localhost";
  const peer = req.socket ? peerSocket(req.socket) : undefined;
  const scheme = (peer as { encrypted?: boolean } | undefined)?.encrypted ? "https" : "http";
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(`${scheme}://${authority}${req.url}`, {
    method,
    headers,
    signal,
    ...(hasBody ? { body: ReadableStream.from(watchIdle(req, res, bodyIdleMs)), duplex: "half" } : {}),
  } as RequestInit);
}

/**
 * The request body's chunks; when the route waits `idleMs` for a chunk that does not come, the request is
 * answered 408 (if nothing was sent yet) and its connection closed, so a stalled upload holds nothing long.
 */
async function* watchIdle(req: NodeRequest, res: NodeResponse, idleMs: number): AsyncGenerator<Uint8Array> {
  const chunks = (req as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onIdle = () => {
    countEvent("upload_idle_timeout");
    if (!res.headersSent && !res.destroyed) {
      try {
        (res as ServerResponse).writeHead(408, {
          "content-type": "text/plain; charset=utf-8",
          connection: "close",
        });
        res.end(`The request body sent nothing for ${idleMs / 1000}s (limits.upload_idle_timeout_s)\n`);
      } catch { /* gone */ }
    }
    // Ends the body with an error, so the route's store write is abandoned; the connection goes too.
    setTimeout(() => req.destroy(new Error("request body idle timeout")), 100).unref?.();
  };
  try {
    for (;;) {
      timer = setTimeout(onIdle, idleMs);
      const next = await chunks.next();
      clearTimeout(timer);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    clearTimeout(timer);
  }
}

async function writeWebResponse(
  response: Response,
  head: boolean,
  res: NodeResponse,
  signal: AbortSignal,
): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of response.headers) if (k !== "set-cookie") headers[k] = v;
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  (res as ServerResponse).writeHead(response.status, headers);
  const body = response.body;
  if (body === null || head) {
    await body?.cancel().catch(() => {});
    res.end();
    return;
  }
  const reader = body.getReader();
  const onAbort = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (signal.aborted) return;
      if (!(res as ServerResponse).write(value)) await drained(res);
    }
    if (!signal.aborted) res.end();
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

function drained(res: NodeResponse): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** The HTTP status that best fits a gRPC code (for errors from plain HTTP routes). */
export function httpStatusOf(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
      return 409;
    case Code.ResourceExhausted:
      return 429;
    case Code.Unimplemented:
      return 501;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}
