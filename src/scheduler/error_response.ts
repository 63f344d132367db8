/**
 * Scheduler-side failures (retries exhausted, no matching worker, cancelled, dropped) reach the client as an
 * ExecuteResponse whose `status` carries the error, as REAPI prescribes.
 *
 * @example
 * ```ts
 * import { errorResponse } from "./error_response.ts";
 * import { CairnError, Code } from "../util/error.ts";
 * errorResponse(new CairnError(Code.Cancelled, "Operation x was cancelled")).status?.code; // 1
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ExecuteResponse,
  ExecuteResponseSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { CairnError } from "../util/error.ts";

/** An ExecuteResponse carrying only an error status. */
export function errorResponse(err: CairnError): ExecuteResponse {
  return create(ExecuteResponseSchema, {
    status: { code: err.code, message: err.message },
    message: err.message,
  });
}
