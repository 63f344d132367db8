/**
 * Digests: the `{hash, size}` key of every CAS blob, and the hash functions that make them.
 *
 * @example
 * ```ts
 * import { digestOf, formatDigest } from "./digest.ts";
 * const d = digestOf(new TextEncoder().encode("hi"));
 * console.log(formatDigest(d)); // 8f434346…-2
 * ```
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { CairnError, Code, quoteClient } from "../util/error.ts";

/** A blob's identity: lowercase hex hash and size in bytes. */
export interface Digest {
  readonly hash: string;
  readonly size: number;
}

/** Digest functions Cairn can compute. */
export type DigestFunctionName = "sha256";

/** Hex length of each digest function's hash. */
export const HASH_HEX_LENGTH: Record<DigestFunctionName, number> = { sha256: 64 };

/** SHA-256 of the empty blob. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** The empty blob's digest, always present in every CAS. */
export const EMPTY_DIGEST: Digest = { hash: EMPTY_SHA256, size: 0 };

const HEX = /^[0-9a-f]+$/;

/** Checks a digest's shape; throws INVALID_ARGUMENT naming what is wrong. */
export function validateDigest(d: Digest, fn: DigestFunctionName = "sha256"): Digest {
  const len = HASH_HEX_LENGTH[fn];
  if (d.hash.length !== len || !HEX.test(d.hash)) {
    throw new CairnError(
      Code.InvalidArgument,
      `Invalid digest hash ${quoteClient(d.hash)}: expected ${len} lowercase hex characters for ${fn}`,
    );
  }
  if (!Number.isSafeInteger(d.size) || d.size < 0) {
    throw new CairnError(
      Code.InvalidArgument,
      `Invalid digest size ${d.size} for ${d.hash}: sizes must be non-negative integers`,
    );
  }
  return d;
}

/** Builds a digest from a proto-style `{hash, sizeBytes: bigint}`; validates it. */
export function fromProto(
  d: { hash: string; sizeBytes: bigint } | undefined,
  fn: DigestFunctionName = "sha256",
): Digest {
  if (d === undefined) throw new CairnError(Code.InvalidArgument, "Missing digest");
  if (d.sizeBytes < 0n) {
    throw new CairnError(
      Code.InvalidArgument,
      `Invalid digest size ${d.sizeBytes} for ${quoteClient(d.hash)}: sizes must be non-negative`,
    );
  }
  const size = Number(d.sizeBytes);
  return validateDigest({ hash: d.hash, size }, fn);
}

/** `hash-size`, the canonical text form used in logs, file names and store keys. */
export function formatDigest(d: Digest): string {
  return `${d.hash}-${d.size}`;
}

/** Parses `hash-size` (the inverse of {@linkcode formatDigest}). */
export function parseDigest(text: string, fn: DigestFunctionName = "sha256"): Digest {
  const i = text.lastIndexOf("-");
  if (i <= 0) {
    throw new CairnError(Code.InvalidArgument, `Invalid digest ${quoteClient(text)}: expected HASH-SIZE`);
  }
  const size = Number(text.slice(i + 1));
  return validateDigest({ hash: text.slice(0, i), size }, fn);
}

/** A streaming hasher for one digest function. */
export function createHasher(fn: DigestFunctionName = "sha256"): Hash {
  return createHash(fn);
}

/** Digest of bytes held in memory (small blobs only). */
export function digestOf(bytes: Uint8Array, fn: DigestFunctionName = "sha256"): Digest {
  return { hash: createHash(fn).update(bytes).digest("hex"), size: bytes.byteLength };
}

/** True when two digests name the same blob. */
export function sameDigest(a: Digest, b: Digest): boolean {
  return a.hash === b.hash && a.size === b.size;
}
