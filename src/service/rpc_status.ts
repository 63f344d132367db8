/**
 * `google.rpc.Status` values for per-item results (batch blob statuses), built from {@linkcode CairnError}.
 *
 * @example
 * ```ts
 * import { okStatus, statusFromError } from "./rpc_status.ts";
 * import { CairnError, Code } from "../util/error.ts";
 * const responses = [];
 * for (const err of [undefined, new CairnError(Code.NotFound, "Cannot read blob: not found")]) {
 *   responses.push({ status: err ? statusFromError(err) : okStatus() });
 * }
 * console.log(responses.map((r) => r.status.code)); // [0, 5]
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
