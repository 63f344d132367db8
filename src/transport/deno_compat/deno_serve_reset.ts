/**
 * Responses that `Deno.serve` can take even when the client has already reset the HTTP/2 stream.
 *
 * Deno 2.9.0 (up to 2.9.2) panics — `HTTP state error: Expected to be last strong reference`
 * (`ext/http/service.rs`, `HttpRecord::recycle`), aborting the whole process — when a handler returns a
 * response whose body is static (a string, bytes, or none) for a request whose HTTP/2 stream the client
 * reset (RST_STREAM) while the handler ran: `HttpRecordExternal::complete` clones the record, so the
 * cancelled record is recycled with two strong references. denoland/deno#36046, fixed in Deno 2.9.3 by
 * denoland/deno#36053. A response whose body is a `ReadableStream` takes another path
 * (`op_http_set_response_body_resource`), which defers the recycling to `op_http_close_after_finish` and
 * is safe whatever the timing. HTTP/1.1 (plain and TLS) is not affected. The same panic is reached when the
 * stream path fails to start because the body's backing resource is already closed (Deno then answers 500
 * with a static body), e.g. a request body echoed back after the client reset the stream.
 *
 * So every response handed to `Deno.serve` goes through {@linkcode resetSafeResponse}: it gets a
 * `ReadableStream` body (an empty one where there was none; no copy when it had one), and a body backed by
 * a Deno resource keeps Deno's native piping only while that resource is open. What this relies on (Deno
 * 2.9.0 internals; `deno_serve_reset_test.ts` fails when they change, and also the day Deno stops
 * panicking, so this module can go):
 * - a `ReadableStream` made by Deno from a resource keeps `{ rid }` under a symbol described
 *   `"[[resourceBacking]]"`, and `Deno[Deno.internal].core.resources()` lists the open resource ids;
 * - a `Response` keeps its inner response under a symbol described `"response"`, whose `status` is what
 *   `Deno.serve` sends: statuses that may not have a body (204, 304, …) are set there, after constructing
 *   the response with a body and status 200.
 *
 * @example
 * ```ts ignore
 * import { resetSafeResponse } from "./deno_serve_reset.ts";
 * Deno.serve(async (req) => {
 *   await new Promise((r) => setTimeout(r, 100)); // the client may reset the stream meanwhile
 *   return resetSafeResponse(new Response("late", { status: 404 }));
 * });
 * ```
 * @module
 */

/** Statuses whose response cannot have a body in the Fetch standard (the `Response` constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

let resourceBackingSymbol: symbol | null | undefined;
let responseSymbol: symbol | null | undefined;

function symbolDescribed(o: object, description: string): symbol | null {
  return Object.getOwnPropertySymbols(o).find((s) => s.description === description) ?? null;
}

/** The Deno resource id behind `stream` (undefined when it is a JavaScript stream). */
export function resourceIdOf(stream: ReadableStream<Uint8Array>): number | undefined {
  resourceBackingSymbol ??= symbolDescribed(stream, "[[resourceBacking]]");
  if (resourceBackingSymbol === null) return undefined;
  const backing = (stream as unknown as Record<symbol, { rid?: unknown } | null | undefined>)[
    resourceBackingSymbol
  ];
  return typeof backing?.rid === "number" ? backing.rid : undefined;
}

/** Whether the Deno resource `rid` is open (`Deno[Deno.internal].core.resources()`). */
function resourceOpen(rid: number): boolean {
  const d = Deno as unknown as Record<symbol, { core?: { resources?: () => Record<string, string> } }> & {
    internal: symbol;
  };
  const resources = d[d.internal]?.core?.resources;
  // Without the listing the resource cannot be checked: treat it as closed (the body is then re-streamed).
  return typeof resources === "function" && String(rid) in resources();
}

/** Sets the status `Deno.serve` will send for `response` (Deno 2.9.0 inner response); false if it cannot. */
function setInnerStatus(response: Response, status: number): boolean {
  responseSymbol ??= symbolDescribed(response, "response");
  if (responseSymbol === null) return false;
  const inner = (response as unknown as Record<symbol, { status?: number } | undefined>)[responseSymbol];
  if (inner === undefined || typeof inner.status !== "number") return false;
  inner.status = status;
  return true;
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
}

/** A stream that fails at once (its resource is gone: the client sees the response aborted). */
function failedStream(reason: string): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({ start: (c) => c.error(new Error(reason)) });
}

/**
 * `response` with the same status, status text and headers and a body `Deno.serve` sends on its streaming
 * path, so answering it cannot panic Deno 2.9.0 when the client already reset the stream. Call it right
 * before handing the response over (in the same microtask run), so a backing resource seen open is still
 * open when Deno takes it. The returned response's headers are a copy; the original's body is moved.
 */
export function resetSafeResponse(response: Response): Response {
  const init = { status: response.status, statusText: response.statusText, headers: response.headers };
  if (NULL_BODY_STATUSES.has(response.status)) {
    void response.body?.cancel().catch(() => {});
    const safe = new Response(emptyStream(), { ...init, status: 200 });
    // Should Deno's inner response change, the status degrades to 200 (deno_serve_reset_test.ts fails).
    setInnerStatus(safe, response.status);
    return safe;
  }
  let body = response.body ?? emptyStream();
  const rid = resourceIdOf(body);
  if (rid !== undefined && !resourceOpen(rid)) {
    body = failedStream(`The response body's resource ${rid} is closed (the client went away?)`);
  }
  return new Response(body, init);
}
