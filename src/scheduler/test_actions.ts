/**
 * Builders of {@linkcode ActionRequest}s for tests and benchmarks.
 *
 * @example
 * ```ts
 * import { actionRequest } from "./test_actions.ts";
 * const req = actionRequest("a", { platform: [{ name: "os", value: "linux" }] });
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  ActionSchema,
  DigestFunction_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { digestOf } from "../digest/digest.ts";
import type { ActionRequest } from "./types.ts";

/** A request for a distinct action per `seed` (same seed → same action digest). */
export function actionRequest(seed: string, overrides: Partial<ActionRequest> = {}): ActionRequest {
  return {
    instanceName: "main",
    digestFunction: DigestFunction_Value.SHA256,
    actionDigest: digestOf(new TextEncoder().encode(seed)),
    action: create(ActionSchema, {}),
    platform: [],
    skipCacheLookup: false,
    priority: 0,
    doNotCache: false,
    ...overrides,
  };
}
