/**
 * Puts an {@linkcode AuthPolicy} in front of a server's service bindings and HTTP routes, so every RPC (gRPC,
 * Connect, gRPC-Web, including the encoded fast paths) and every HTTP cache request is checked in one place
 * before its handler runs. Each method needs one permission on the instance its request names:
 *
 * | permission  | methods                                                                                   |
 * | ----------- | ----------------------------------------------------------------------------------------- |
 * | `read`      | FindMissingBlobs, BatchReadBlobs, GetTree, SplitBlob, ByteStream Read, GetActionResult, GetCapabilities, FetchBlob/Directory, HTTP GET/HEAD |
 * | `write_cas` | BatchUpdateBlobs, SpliceBlob, ByteStream Write/QueryWriteStatus, HTTP PUT /cas              |
 * | `write_ac`  | UpdateActionResult, PushBlob/Directory, HTTP PUT /ac                                      |
 * | `execute`   | Execute, WaitExecution, google.longrunning.Operations                                     |
 *
 * Health (gRPC and `/status`), metrics and the worker API (which checks worker credentials itself) stay
 * open; a method of any other service needs every permission on every instance. The instance comes from
 * the request's `instance_name`, its ByteStream resource name (the first message of a Write), or its
 * operation name; when a caller holds the permission on every instance the request is not even looked at
 * (encoded fast paths stay undecoded).
 *
 * @example
 * ```ts ignore
 * import { guardBindings, guardRoutes } from "./guard.ts";
 * const server = createCairnServer({ listener, bindings: guardBindings(bindings, policy), routes: guardRoutes(routes, policy) });
 * ```
 * @module
 */
import type { DescMethod } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { AuthPermission } from "../config/types.ts";
import { parseReadResourceName, parseWriteResourceName } from "../digest/resource_name.ts";
import { instanceOfOperation } from "../scheduler/operation_name.ts";
import { decodeRequest } from "../util/proto_wire.ts";
import { kPeer } from "../transport/peer.ts";
import type { EncodedServerStream, EncodedUnary, HttpRoute, ServiceBinding } from "../transport/types.ts";
import { CairnError, Code } from "../util/error.ts";
import type { AuthPolicy } from "./policy.ts";

const REAPI = "build.bazel.remote.execution.v2";
const OPEN = "open" as const;
type Rule = AuthPermission | typeof OPEN;

/** Service type name → method name → permission (`"*"`: every method of the service). */
const RULES: Readonly<Record<string, Readonly<Record<string, Rule>>>> = {
  [`${REAPI}.ContentAddressableStorage`]: {
    FindMissingBlobs: "read",
    BatchReadBlobs: "read",
    GetTree: "read",
    SplitBlob: "read",
    BatchUpdateBlobs: "write_cas",
    SpliceBlob: "write_cas",
  },
  [`${REAPI}.ActionCache`]: { GetActionResult: "read", UpdateActionResult: "write_ac" },
  [`${REAPI}.Capabilities`]: { GetCapabilities: "read" },
  [`${REAPI}.Execution`]: { Execute: "execute", WaitExecution: "execute" },
  "google.bytestream.ByteStream": { Read: "read", Write: "write_cas", QueryWriteStatus: "write_cas" },
  "google.longrunning.Operations": { "*": "execute" },
  "build.bazel.remote.asset.v1.Fetch": { "*": "read" },
  "build.bazel.remote.asset.v1.Push": { "*": "write_ac" },
  "grpc.health.v1.Health": { "*": OPEN },
  "cairn.worker.v1.WorkerApi": { "*": OPEN },
};

/** The permission a method needs; undefined for an unknown method (then every permission is needed). */
export function permissionOf(serviceTypeName: string, methodName: string): Rule | undefined {
  const rules = RULES[serviceTypeName];
  return rules?.[methodName] ?? rules?.["*"];
}

/** The instance a request message names, or undefined when it names none clearly. */
export function instanceOfRequest(message: unknown): string | undefined {
  const m = message as { instanceName?: unknown; resourceName?: unknown; name?: unknown } | null;
  if (m === null || typeof m !== "object") return undefined;
  if (typeof m.instanceName === "string") return m.instanceName;
  if (typeof m.resourceName === "string") {
    const name = m.resourceName;
    try {
      return (/(^|\/)uploads\//.test(name) ? parseWriteResourceName(name) : parseReadResourceName(name))
        .instanceName;
    } catch {
      return undefined;
    }
  }
  if (typeof m.name === "string") return instanceOfOperation(m.name);
  return undefined;
}

type AnyFn = (request: unknown, context: HandlerContext) => unknown;

/** Wraps every binding so each call is checked against `policy` first. An open policy changes nothing. */
export function guardBindings(bindings: readonly ServiceBinding[], policy: AuthPolicy): ServiceBinding[] {
  if (policy.open) return [...bindings];
  return bindings.map((b) => guardBinding(b, policy));
}

function guardBinding(binding: ServiceBinding, policy: AuthPolicy): ServiceBinding {
  const impl: Record<string, AnyFn> = {};
  const encoded: Record<string, EncodedUnary | EncodedServerStream> = {};
  let open = true;
  for (const method of binding.service.methods) {
    const rule = permissionOf(binding.service.typeName, method.name);
    if (rule !== OPEN) open = false;
    const fn = binding.impl[method.localName];
    if (typeof fn === "function") {
      const bound = (fn as AnyFn).bind(binding.impl);
      impl[method.localName] = rule === OPEN ? bound : guardMethod(method, bound, rule, policy);
    }
    const enc = binding.encoded?.[method.localName];
    if (enc !== undefined) {
      encoded[method.localName] = rule === OPEN ? enc : guardEncoded(method, enc, rule, policy);
    }
  }
  if (open) return binding;
  return {
    service: binding.service,
    impl: impl as ServiceBinding["impl"],
    ...(binding.encoded ? { encoded } : {}),
  };
}

/** Checks `rule` (undefined: every permission) for a caller on `instance`. */
function authorize(
  policy: AuthPolicy,
  ctx: HandlerContext,
  message: unknown,
  rule: AuthPermission | undefined,
): void {
  const identity = policy.identify(ctx.requestHeader, ctx.values.get(kPeer));
  const needed = rule === undefined ? ["read", "write_cas", "write_ac", "execute"] as const : [rule];
  for (const p of needed) {
    if (rule !== undefined && identity.hasEverywhere(p)) continue;
    policy.authorize(identity, rule === undefined ? undefined : instanceOfRequest(message), p);
  }
}

function guardMethod(
  method: DescMethod,
  fn: AnyFn,
  rule: AuthPermission | undefined,
  policy: AuthPolicy,
): AnyFn {
  switch (method.methodKind) {
    case "unary":
      return async (request, ctx) => {
        authorize(policy, ctx, request, rule);
        return await fn(request, ctx);
      };
    case "server_streaming":
      return async function* (request, ctx) {
        authorize(policy, ctx, request, rule);
        yield* fn(request, ctx) as AsyncIterable<unknown>;
      };
    case "client_streaming":
      return async (requests, ctx) => {
        const rest = await checkFirst(requests as AsyncIterable<unknown>, ctx, policy, rule);
        return await fn(rest, ctx);
      };
    case "bidi_streaming":
      return async function* (requests, ctx) {
        const rest = await checkFirst(requests as AsyncIterable<unknown>, ctx, policy, rule);
        yield* fn(rest, ctx) as AsyncIterable<unknown>;
      };
  }
}

/** Identifies the caller at once, authorizes on the first message's instance, and returns the whole stream. */
async function checkFirst(
  requests: AsyncIterable<unknown>,
  ctx: HandlerContext,
  policy: AuthPolicy,
  rule: AuthPermission | undefined,
): Promise<AsyncIterable<unknown>> {
  policy.identify(ctx.requestHeader, ctx.values.get(kPeer)); // a bad credential fails before any read
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  authorize(policy, ctx, first.done ? undefined : first.value, rule);
  return (async function* () {
    if (first.done) return;
    yield first.value;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  })();
}

function guardEncoded(
  method: DescMethod,
  fn: EncodedUnary | EncodedServerStream,
  rule: AuthPermission | undefined,
  policy: AuthPolicy,
): EncodedUnary | EncodedServerStream {
  const check = (bytes: Uint8Array, ctx: HandlerContext) => {
    const identity = policy.identify(ctx.requestHeader, ctx.values.get(kPeer));
    if (rule !== undefined && identity.hasEverywhere(rule)) return;
    authorize(policy, ctx, decodeRequest(method.input, bytes), rule);
  };
  if (method.methodKind === "server_streaming") {
    const stream = fn as EncodedServerStream;
    return async function* (bytes, ctx) {
      check(bytes, ctx);
      yield* stream(bytes, ctx);
    };
  }
  const unary = fn as EncodedUnary;
  return (bytes, ctx) => {
    check(bytes, ctx);
    return unary(bytes, ctx);
  };
}

/** Bazel's HTTP cache paths: `/{instance/}cas|ac/{sha256}`. */
const HTTP_CACHE_PATH = /^\/(?:(.+)\/)?(cas|ac)\/([0-9a-f]{64})$/;

/**
 * Wraps HTTP routes: requests for the HTTP cache paths are checked (GET/HEAD: read; PUT /cas: write_cas;
 * PUT /ac: write_ac) and answered 401/403 with a `WWW-Authenticate` challenge when refused; other paths
 * (status, metrics) pass unchecked.
 */
export function guardRoutes(routes: readonly HttpRoute[], policy: AuthPolicy): HttpRoute[] {
  if (policy.open) return [...routes];
  return routes.map((route): HttpRoute => async (request, peer) => {
    const method = request.method;
    if (method === "GET" || method === "HEAD" || method === "PUT") {
      const m = HTTP_CACHE_PATH.exec(new URL(request.url).pathname);
      if (m) {
        const permission: AuthPermission = method !== "PUT"
          ? "read"
          : m[2] === "cas"
          ? "write_cas"
          : "write_ac";
        try {
          policy.check(request.headers, peer, m[1] ?? "", permission);
        } catch (err) {
          await request.body?.cancel().catch(() => {});
          const e = CairnError.from(err);
          const status = e.code === Code.PermissionDenied ? 403 : 401;
          return new Response(`${e.message}\n`, {
            status,
            headers: {
              "content-type": "text/plain; charset=utf-8",
              ...(status === 401 ? { "www-authenticate": 'Bearer realm="cairn", Basic realm="cairn"' } : {}),
            },
          });
        }
      }
    }
    return await route(request, peer);
  });
}
