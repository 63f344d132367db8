/**
 * Credentials as clients present them, and how Cairn compares them: tokens and passwords are kept only as
 * SHA-256 hex digests and compared in constant time (`crypto.timingSafeEqual` on equal-length digests), so
 * neither the config nor the comparison leaks a secret.
 *
 * - `authorization: Bearer TOKEN` (Bazel: `--remote_header=Authorization=Bearer TOKEN`)
 * - `authorization: Basic base64(user:password)` (Bazel sends it for `grpc://user:password@host`)
 *
 * @example
 * ```ts
 * import { parseAuthorization, sha256Hex, sameSecret } from "./credentials.ts";
 * const configuredSha256 = sha256Hex("s3cret"); // what a config's token_sha256 holds
 * const cred = parseAuthorization("Bearer s3cret");
 * if (cred?.kind === "bearer") sameSecret(sha256Hex(cred.token), configuredSha256);
 * ```
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { CairnError, Code } from "../util/error.ts";

/** A credential from an `authorization` header. */
export type Credential =
  | { readonly kind: "bearer"; readonly token: string }
  | { readonly kind: "basic"; readonly user: string; readonly password: string };

/** Lower-case hex SHA-256 of a UTF-8 string (how tokens and passwords are written in the config). */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Whether two SHA-256 hex digests are equal, in time independent of where they differ. */
export function sameSecret(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex.toLowerCase(), "utf8");
  const b = Buffer.from(bHex.toLowerCase(), "utf8");
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** A fresh random credential (32 bytes, base64url). */
export function randomToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Parses an `authorization` header. Undefined when there is none; UNAUTHENTICATED when it is present but
 * neither a Bearer nor a well-formed Basic credential.
 */
export function parseAuthorization(header: string | null | undefined): Credential | undefined {
  if (header === null || header === undefined || header === "") return undefined;
  const m = /^\s*(\S+)\s+(.+?)\s*$/.exec(header);
  const scheme = m?.[1]?.toLowerCase();
  if (m && scheme === "bearer") return { kind: "bearer", token: m[2]! };
  if (m && scheme === "basic") {
    let decoded: string;
    try {
      decoded = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(m[2]!, "base64"));
    } catch {
      decoded = "";
    }
    const colon = decoded.indexOf(":");
    if (colon > 0) {
      return { kind: "basic", user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
  }
  throw new CairnError(
    Code.Unauthenticated,
    'Unsupported authorization header: expected "Bearer TOKEN" or "Basic base64(user:password)"',
  );
}
