/**
 * One span per RPC (gRPC and Connect paths alike) when tracing is on: named `package.Service/Method`, with
 * `rpc.system`, `rpc.service`, `rpc.method`, `cairn.instance_name`, `cairn.digest` (when the request names
 * one) and `rpc.grpc.status_code`. A `traceparent` request header makes it the child of the caller's span.
 * Callers test {@linkcode TRACING} first, so nothing here runs when telemetry is off.
 *
 * @example
 * ```ts
 * import { endRpcSpan, startRpcSpan } from "./rpc_tracing.ts";
 * const span = startRpcSpan("build.bazel.remote.execution.v2.Execution", "Execute", undefined);
 * endRpcSpan(span, 0);
 * ```
 * @module
 */
import { codeName } from "../util/error.ts";
import {
  digestAttribute,
  NOOP_SPAN,
  remoteParent,
  SpanKind,
  startSpan,
  type TraceSpan,
  TRACING,
} from "../util/tracing.ts";

export { TRACING, withSpan } from "../util/tracing.ts";

/** Starts the server span of a call to `service/method`; `traceparent` is the request's header, if any. */
export function startRpcSpan(
  service: string,
  method: string,
  traceparent: string | string[] | undefined,
): TraceSpan {
  if (!TRACING) return NOOP_SPAN;
  const parent = remoteParent(Array.isArray(traceparent) ? traceparent[0] : traceparent);
  return startSpan(`${service}/${method}`, {
    kind: SpanKind.SERVER,
    attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method },
  }, parent);
}

interface DigestLike {
  readonly hash: string;
  readonly sizeBytes: bigint;
}

const RESOURCE_DIGEST = /(?:^|\/)(?:blobs|compressed-blobs\/[a-z0-9]+)\/([0-9a-f]{32,128})\/(\d+)/;

/**
 * Adds what a decoded request tells: `instanceName` and the first of `actionDigest`, `digest`, a ByteStream
 * `resourceName`'s digest, or the one digest of a single-element `blobDigests`/`digests`/`requests`.
 */
export function setRequestAttributes(span: TraceSpan, request: unknown): void {
  if (span === NOOP_SPAN || request === null || typeof request !== "object") return;
  const r = request as Record<string, unknown>;
  const instance = r.instanceName;
  if (typeof instance === "string") span.setAttribute("cairn.instance_name", instance);
  let digest: string | undefined;
  const d = (r.actionDigest ?? r.digest) as DigestLike | undefined;
  if (d !== undefined && typeof d === "object") digest = digestAttribute(d);
  if (digest === undefined && typeof r.resourceName === "string") {
    const m = RESOURCE_DIGEST.exec(r.resourceName);
    if (m) digest = `${m[1]}/${m[2]}`;
    if (typeof instance !== "string") {
      const at = r.resourceName.search(/(?:^|\/)(?:uploads|blobs|compressed-blobs)\//);
      if (at >= 0) span.setAttribute("cairn.instance_name", r.resourceName.slice(0, at));
    }
  }
  if (digest === undefined) {
    const list = (r.blobDigests ?? r.digests) as DigestLike[] | undefined;
    if (Array.isArray(list)) {
      span.setAttribute("cairn.digest_count", list.length);
      if (list.length === 1) digest = digestAttribute(list[0]);
    }
  }
  if (digest !== undefined) span.setAttribute("cairn.digest", digest);
}

/** A `grpc-message` trailer value decoded (it is percent-encoded on the wire). */
export function grpcMessage(encoded: string | undefined): string | undefined {
  if (encoded === undefined) return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
}

/** Ends an RPC span with its gRPC status code (0: OK). */
export function endRpcSpan(span: TraceSpan, code: number, message?: string): void {
  if (span === NOOP_SPAN) return;
  span.setAttribute("rpc.grpc.status_code", code);
  span.setStatus(
    code === 0
      ? { code: 1 }
      : { code: 2, message: message ? `${codeName(code)}: ${message}` : codeName(code) },
  );
  span.end();
}
