/**
 * HTTP/2 response trailers on `Deno.serve`, which has no public API for them (Deno 2.9.0). gRPC needs them:
 * every call ends with a trailing HEADERS frame carrying `grpc-status`.
 *
 * What this relies on (Deno 2.9.0 internals; `deno_serve_trailers_test.ts` fails loudly when they change):
 * - `Deno[Deno.internal].addTrailers(response, [[name, value], …])`, which calls
 *   `op_http_set_response_trailers(inner.external, list)` on the response's inner object;
 * - a `Request` given to a `Deno.serve` handler keeps its inner request under a symbol described
 *   `"request"`, whose `external` getter is the native handle of the HTTP exchange;
 * - once the exchange is over (its response sent or abandoned), the inner request's `external` reads
 *   `null`: the native handle is freed then, and `addTrailers` with it would abort the process ("Detected an
 *   invalid v8::External"), so trailers set after that are dropped (the stream is over anyway);
 * - a `Response` keeps its inner response under a symbol described `"response"`; setting `external` on it
 *   ties the response to the exchange so `addTrailers` reaches it.
 * Trailers may be set any time before the response body closes; they go out after the last DATA frame.
 * On HTTP/1.1 they are dropped (Connect and gRPC-Web carry their status in the body).
 *
 * @example
 * ```ts ignore
 * import { responseWithTrailers } from "./deno_serve_trailers.ts";
 * Deno.serve((req) => {
 *   const body = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(new Uint8Array(5)); } });
 *   const { response, setTrailers } = responseWithTrailers(req, body, { "content-type": "application/grpc" });
 *   setTrailers([["grpc-status", "0"]]); // before the body closes
 *   return response;
 * });
 * ```
 * @module
 */
import { CairnError, Code } from "../../util/error.ts";

type AddTrailers = (response: Response, trailers: [string, string][]) => void;

interface Internals {
  readonly addTrailers: AddTrailers;
  readonly requestSymbol: symbol;
  readonly responseSymbol: symbol;
}

let internals: Internals | undefined;

function symbolOf(o: object, description: string, what: string): symbol {
  const s = Object.getOwnPropertySymbols(o).find((x) => x.description === description);
  if (s === undefined) {
    throw new CairnError(
      Code.Internal,
      `Deno ${Deno.version.deno}: a ${what} has no symbol "${description}"; the Deno.serve gRPC path ` +
        `(deno_serve_trailers.ts) needs Deno 2.9.0 internals; use listener \`server: "node_http2"\``,
    );
  }
  return s;
}

/** The internals this module needs, checked once (CairnError INTERNAL when Deno changed them). */
function load(request: Request): Internals {
  if (internals !== undefined) return internals;
  const d = Deno as unknown as Record<symbol, Record<string, unknown>> & { internal?: symbol };
  const addTrailers = d.internal === undefined ? undefined : d[d.internal]?.addTrailers;
  if (typeof addTrailers !== "function") {
    throw new CairnError(
      Code.Internal,
      `Deno ${Deno.version.deno} has no Deno[Deno.internal].addTrailers; the Deno.serve gRPC path needs it`,
    );
  }
  const probe = new Response(null);
  internals = {
    addTrailers: addTrailers as AddTrailers,
    requestSymbol: symbolOf(request, "request", "Request"),
    responseSymbol: symbolOf(probe, "response", "Response"),
  };
  return internals;
}

/** A response tied to its request's HTTP exchange, and how to set its trailers. */
export interface TrailingResponse {
  readonly response: Response;
  /** Sets the trailers (call before the body closes; the last call wins; dropped once the exchange is over). */
  setTrailers(trailers: [string, string][]): void;
}

/**
 * Makes a response for `request` (a `Deno.serve` handler's request) whose trailers can be set later.
 * Throws CairnError INTERNAL when the Deno internals it relies on are missing.
 */
export function responseWithTrailers(
  request: Request,
  body: BodyInit | null,
  headers: HeadersInit,
): TrailingResponse {
  const i = load(request);
  const innerRequest = (request as unknown as Record<symbol, { external?: unknown } | undefined>)[
    i.requestSymbol
  ];
  const external = innerRequest?.external;
  if (external === undefined || external === null) {
    throw new CairnError(
      Code.Internal,
      `Deno ${Deno.version.deno}: the request has no internal "external" handle (not from Deno.serve?)`,
    );
  }
  const response = new Response(body, { headers });
  const inner =
    (response as unknown as Record<symbol, Record<string, unknown> | undefined>)[i.responseSymbol];
  if (inner === undefined) {
    throw new CairnError(Code.Internal, `Deno ${Deno.version.deno}: a Response has no inner response`);
  }
  inner.external = external;
  return {
    response,
    setTrailers: (trailers) => {
      // The client may have reset the stream and Deno freed the exchange: nothing can be sent any more.
      if (innerRequest?.external === null || innerRequest?.external === undefined) return;
      i.addTrailers(response, trailers);
    },
  };
}
