/**
 * The `digest_function` field of REAPI requests: SHA-256 (or UNKNOWN, meaning the default) is served,
 * anything else is refused.
 *
 * @example
 * ```ts
 * import { checkDigestFunction } from "./digest_function.ts";
 * import { DigestFunction_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
 * const request = { digestFunction: DigestFunction_Value.SHA256 };
 * const fn = checkDigestFunction(request.digestFunction); // "sha256"
 * console.log(fn);
 * ```
 * @module
 */
import { DigestFunction_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { DigestFunctionName } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";

/** Digest functions advertised in capabilities. */
export const SUPPORTED_DIGEST_FUNCTIONS: readonly DigestFunction_Value[] = [DigestFunction_Value.SHA256];

/** Maps a request's digest function to Cairn's name; throws INVALID_ARGUMENT for unsupported ones. */
export function checkDigestFunction(value: DigestFunction_Value): DigestFunctionName {
  if (value === DigestFunction_Value.SHA256 || value === DigestFunction_Value.UNKNOWN) return "sha256";
  const name = DigestFunction_Value[value] ?? String(value);
  throw new CairnError(
    Code.InvalidArgument,
    `Unsupported digest function ${name}: this server supports SHA256 only`,
  );
}
