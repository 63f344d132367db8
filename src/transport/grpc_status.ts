/**
 * Maps thrown errors to gRPC statuses: `CairnError` keeps its code and message, `ConnectError` its code,
 * anything else becomes {@linkcode CairnError.from}'s mapping (INTERNAL by default). Details travel as a
 * binary `google.rpc.Status` in `grpc-status-details-bin`.
 *
 * @example
 * ```ts
 * import { statusTrailers } from "./grpc_status.ts";
 * import { errors } from "../util/error.ts";
 * statusTrailers(errors.notFound("Cannot read blob: not found"));
 * // { "grpc-status": "5", "grpc-message": "Cannot read blob: not found" }
 * ```
 * @module
 */
import {
  create,
  createMutableRegistry,
  type DescMessage,
  isMessage,
  type Message,
  toBinary,
} from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { CairnError, type Code, type ErrorDetail } from "../util/error.ts";

const detailTypes = createMutableRegistry(file_google_rpc_error_details);

/** Makes more message types usable as `CairnError` details (google.rpc error details are known already). */
export function registerErrorDetailTypes(...types: DescMessage[]): void {
  for (const t of types) detailTypes.add(t);
}

/** A status ready for the wire. */
export interface GrpcStatus {
  readonly code: Code;
  readonly message: string;
  readonly details: readonly Any[];
  /** Extra metadata to send as trailers (from a ConnectError). */
  readonly metadata?: Headers | undefined;
}

/** The status a thrown value maps to. */
export function statusOf(err: unknown): GrpcStatus {
  if (err instanceof ConnectError) {
    return {
      code: err.code as number as Code,
      message: clipMessage(err.rawMessage),
      details: err.details.map(connectDetailToAny),
      metadata: err.metadata,
    };
  }
  const e = CairnError.from(err);
  return { code: e.code, message: clipMessage(e.message), details: anyDetails(e.details) };
}

/** Longest status message sent (a client's huge resource or instance name must not blow the trailers up). */
export const MAX_STATUS_MESSAGE_CHARS = 1024;

/** Cuts a status message to {@linkcode MAX_STATUS_MESSAGE_CHARS}, marking the cut. */
export function clipMessage(message: string): string {
  return message.length <= MAX_STATUS_MESSAGE_CHARS
    ? message
    : `${message.slice(0, MAX_STATUS_MESSAGE_CHARS)}… (${
      message.length - MAX_STATUS_MESSAGE_CHARS
    } more chars)`;
}

/** The `grpc-status`, `grpc-message` and (with details) `grpc-status-details-bin` trailers for an error. */
export function statusTrailers(err: unknown): Record<string, string> {
  const status = statusOf(err);
  const out: Record<string, string> = {};
  if (status.metadata) {
    for (const [k, v] of status.metadata) if (!k.startsWith("grpc-") && !k.startsWith(":")) out[k] = v;
  }
  out["grpc-status"] = String(status.code);
  out["grpc-message"] = percentEncode(status.message);
  if (status.details.length > 0) {
    const bin = toBinary(
      StatusSchema,
      create(StatusSchema, { code: status.code, message: status.message, details: [...status.details] }),
    );
    out["grpc-status-details-bin"] = Buffer.from(bin).toString("base64").replace(/=+$/, "");
  }
  return out;
}

/** Converts any thrown value to a `ConnectError` with the same code, message and details (for connect-es). */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = CairnError.from(err);
  const ce = new ConnectError(
    clipMessage(e.message),
    e.code as number as ConnectCode,
    undefined,
    undefined,
    err,
  );
  for (const any of anyDetails(e.details)) {
    ce.details.push({ type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1), value: any.value });
  }
  return ce;
}

/** Percent-encodes a `grpc-message` value (bytes outside printable ASCII, and `%`). */
export function percentEncode(message: string): string {
  if (!/[^\x20-\x24\x26-\x7e]/.test(message)) return message;
  let out = "";
  for (const b of new TextEncoder().encode(message)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Packs CairnError details; a detail of an unregistered type is dropped (the code and message still go). */
function anyDetails(details: readonly ErrorDetail[]): Any[] {
  const out: Any[] = [];
  for (const d of details) {
    const typeUrl = `type.googleapis.com/${d.typeName}`;
    if (d.value instanceof Uint8Array) {
      out.push(create(AnySchema, { typeUrl, value: d.value }));
      continue;
    }
    const desc = detailTypes.getMessage(d.typeName);
    if (!desc) continue;
    const msg = isMessage(d.value, desc) ? d.value : create(desc, d.value as never);
    out.push(create(AnySchema, { typeUrl, value: toBinary(desc, msg as Message) }));
  }
  return out;
}

function connectDetailToAny(d: ConnectError["details"][number]): Any {
  if ("desc" in d) {
    const msg = isMessage(d.value, d.desc) ? d.value : create(d.desc, d.value as never);
    return create(AnySchema, {
      typeUrl: `type.googleapis.com/${d.desc.typeName}`,
      value: toBinary(d.desc, msg as Message),
    });
  }
  return create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value });
}
