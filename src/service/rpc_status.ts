/**
 * `google.rpc.Status` values for per-item results (batch blob statuses), built from {@linkcode CairnError}.
 *
 * @example
 * ```ts ignore
 * import { okStatus, statusFromError } from "./rpc_status.ts";
 * responses.push({ digest, status: err ? statusFromError(err) : okStatus() });
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Status, StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { CairnError, Code } from "../util/error.ts";

/** An OK status. */
export function okStatus(): Status {
  return create(StatusSchema, { code: Code.Ok, message: "" });
}

/** A status carrying the code and message of any thrown value (non-Cairn errors become INTERNAL). */
export function statusFromError(err: unknown, context?: string): Status {
  const e = CairnError.from(err, context);
  return create(StatusSchema, { code: e.code, message: e.message });
}
