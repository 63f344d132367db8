/**
 * The one error type of Cairn: a message in sentence case plus a gRPC status code.
 *
 * Stores, schedulers and workers throw {@linkcode CairnError}; services and the transport convert it to a
 * gRPC/Connect status at the edge. Nothing else catches and rethrows.
 *
 * @example
 * ```ts
 * import { CairnError, Code } from "./error.ts";
 * const key = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4-2";
 * const err = new CairnError(Code.NotFound, `Cannot read blob ${key}: not found in store "cas"`);
 * console.log(err.code === Code.NotFound); // true
 * ```
 * @module
 */

/** gRPC status codes (google.rpc.Code), numbered as on the wire. */
export enum Code {
  Ok = 0,
  Cancelled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

/** Upper-snake names of {@linkcode Code}, as logged and as gRPC tools print them. */
export function codeName(code: Code): string {
  return Code[code]?.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase() ?? `CODE_${code}`;
}

/** Extra detail carried to the client as a `google.rpc.Status` detail (encoded by the service layer). */
export interface ErrorDetail {
  /** Fully-qualified protobuf type name, e.g. `google.rpc.PreconditionFailure`. */
  readonly typeName: string;
  /** The detail message (a protobuf-es message object). */
  readonly value: unknown;
}

/** An error with a gRPC status code. */
export class CairnError extends Error {
  /** The gRPC status code. */
  readonly code: Code;
  /** Optional structured details (e.g. PreconditionFailure violations). */
  readonly details: readonly ErrorDetail[];

  constructor(code: Code, message: string, options?: { cause?: unknown; details?: readonly ErrorDetail[] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CairnError";
    this.code = code;
    this.details = options?.details ?? [];
  }

  /** Wraps any thrown value: a CairnError passes through; anything else becomes INTERNAL (or the mapped code). */
  static from(err: unknown, context?: string): CairnError {
    if (err instanceof CairnError) return err;
    const e = err as { code?: unknown; message?: unknown; name?: unknown } | undefined;
    const msg = typeof e?.message === "string" ? e.message : String(err);
    const prefix = context ? `${context}: ` : "";
    if (e?.name === "AbortError") return new CairnError(Code.Cancelled, `${prefix}${msg}`, { cause: err });
    switch (e?.code) {
      case "ENOSPC":
      case "EDQUOT":
        return new CairnError(Code.ResourceExhausted, `${prefix}disk full (${msg})`, { cause: err });
      case "ENOENT":
        return new CairnError(Code.NotFound, `${prefix}${msg}`, { cause: err });
      case "EACCES":
      case "EPERM":
        return new CairnError(Code.PermissionDenied, `${prefix}${msg}`, { cause: err });
    }
    if (err instanceof Deno.errors.NotFound) {
      return new CairnError(Code.NotFound, `${prefix}${msg}`, { cause: err });
    }
    return new CairnError(Code.Internal, `${prefix}${msg}`, { cause: err });
  }
}

/** Most characters of one client-supplied string echoed into an error message. */
export const MAX_QUOTED_CLIENT_CHARS = 200;

/**
 * Quotes a client-supplied string (instance or resource name, hash, token…) for an error message: JSON-quoted,
 * cut to {@linkcode MAX_QUOTED_CLIENT_CHARS} characters with the full length noted, so a huge input never
 * comes back in full (nor bloats logs).
 *
 * @example
 * ```ts
 * quoteClient("main"); // "\"main\""
 * quoteClient("x".repeat(100_000)); // "\"xxx…\"… (100000 characters)"
 * ```
 */
export function quoteClient(text: string): string {
  if (text.length <= MAX_QUOTED_CLIENT_CHARS) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, MAX_QUOTED_CLIENT_CHARS))}… (${text.length} characters)`;
}

/** Shorthand constructors for the common codes. */
export const errors = {
  invalidArgument: (msg: string) => new CairnError(Code.InvalidArgument, msg),
  notFound: (msg: string) => new CairnError(Code.NotFound, msg),
  failedPrecondition: (msg: string) => new CairnError(Code.FailedPrecondition, msg),
  outOfRange: (msg: string) => new CairnError(Code.OutOfRange, msg),
  unimplemented: (msg: string) => new CairnError(Code.Unimplemented, msg),
  internal: (msg: string, cause?: unknown) => new CairnError(Code.Internal, msg, { cause }),
  resourceExhausted: (msg: string) => new CairnError(Code.ResourceExhausted, msg),
  unavailable: (msg: string, cause?: unknown) => new CairnError(Code.Unavailable, msg, { cause }),
};
