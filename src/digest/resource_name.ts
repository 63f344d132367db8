/**
 * ByteStream resource names of the REAPI CAS, parsed and formatted.
 *
 * Reads: `{instance}/blobs/{hash}/{size}` and `{instance}/compressed-blobs/{compressor}/{hash}/{size}`, parsed
 * from the right so an instance name may be empty or span several segments.
 * Writes: `{instance}/uploads/{uuid}/blobs/{hash}/{size}{/metadata}` and the `compressed-blobs/{compressor}`
 * form; the `uploads` keyword is found from the left (the spec forbids it as an instance segment) because the
 * optional metadata may contain slashes. An optional `{digest_function}/` segment before the hash is accepted
 * for `sha256` and refused for anything else.
 *
 * @example
 * ```ts
 * import { parseReadResourceName, parseWriteResourceName } from "./resource_name.ts";
 * const r = parseReadResourceName("main/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0");
 * // { instanceName: "main", compressor: "identity", digest: { hash: "e3b0…", size: 0 } }
 * const w = parseWriteResourceName(
 *   "uploads/1f0e4c2a-9d3b-4e6f-8a7c-5b2d1e0f9a8b/compressed-blobs/zstd/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0",
 * );
 * console.log(r.instanceName, w.compressor); // main zstd
 * ```
 * @module
 */
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { type Digest, validateDigest } from "./digest.ts";

/** Wire compressors Cairn serves in resource names. */
export type ResourceCompressor = "identity" | "zstd";

/** A parsed `…/blobs/…` or `…/compressed-blobs/…` read resource. */
export interface ReadResourceName {
  readonly instanceName: string;
  readonly compressor: ResourceCompressor;
  readonly digest: Digest;
}

/** A parsed `…/uploads/{uuid}/…` write resource. */
export interface WriteResourceName extends ReadResourceName {
  readonly uuid: string;
  /** Whatever followed `{size}/`, or "" (ignored by Cairn). */
  readonly metadata: string;
}

/** Path segments an instance name may not contain (REAPI). */
const KEYWORDS = new Set([
  "blobs",
  "uploads",
  "actions",
  "actionResults",
  "operations",
  "capabilities",
  "compressed-blobs",
]);
const DIGEST_FUNCTION_NAMES = new Set([
  "sha256",
  "sha1",
  "md5",
  "vso",
  "sha384",
  "sha512",
  "murmur3",
  "sha256tree",
  "blake3",
  "gitsha1",
]);

/**
 * Longest resource name accepted (characters): an instance name of up to 1 KiB (see
 * `MAX_INSTANCE_NAME_CHARS` in `src/service/instances.ts`), the upload uuid, hash, size and some metadata.
 */
export const MAX_RESOURCE_NAME_CHARS = 4096;

/** Longest instance name inside a resource name (the same limit as the instance_name fields). */
const MAX_INSTANCE_CHARS = 1024;

function bad(name: string, why: string): CairnError {
  return new CairnError(Code.InvalidArgument, `Invalid resource name ${quoteClient(name)}: ${why}`);
}

function checkLength(name: string): void {
  if (name.length > MAX_RESOURCE_NAME_CHARS) {
    throw bad(name, `${name.length} characters long, more than the limit of ${MAX_RESOURCE_NAME_CHARS}`);
  }
}

function parseSize(name: string, text: string): number {
  if (!/^[0-9]+$/.test(text)) throw bad(name, `size ${quoteClient(text)} is not a non-negative integer`);
  const size = Number(text);
  if (!Number.isSafeInteger(size)) throw bad(name, `size ${quoteClient(text)} is too large`);
  return size;
}

function parseCompressor(name: string, text: string | undefined): ResourceCompressor {
  if (text === "zstd") return "zstd";
  throw bad(name, `compressor ${quoteClient(text ?? "")} is not supported (supported: zstd)`);
}

function checkDigestFunction(name: string, fn: string): void {
  if (fn !== "sha256") {
    throw bad(
      name,
      DIGEST_FUNCTION_NAMES.has(fn)
        ? `digest function "${fn}" is not supported (supported: sha256)`
        : `unexpected segment ${quoteClient(fn)} before the hash`,
    );
  }
}

function checkInstance(name: string, segments: readonly string[]): string {
  for (const s of segments) {
    if (KEYWORDS.has(s)) throw bad(name, `instance name segment "${s}" is a reserved keyword`);
  }
  const instance = segments.join("/");
  if (instance.length > MAX_INSTANCE_CHARS) {
    throw bad(
      name,
      `the instance name is ${instance.length} characters long, more than ${MAX_INSTANCE_CHARS}`,
    );
  }
  return instance;
}

function digestOf(name: string, hash: string, size: string): Digest {
  const parsedSize = parseSize(name, size);
  try {
    return validateDigest({ hash, size: parsedSize });
  } catch (err) {
    throw bad(name, (err as Error).message);
  }
}

/**
 * Parses a ByteStream `Read` resource name. Throws INVALID_ARGUMENT naming what is wrong.
 *
 * @example
 * ```ts
 * const hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
 * parseReadResourceName(`a/b/compressed-blobs/zstd/${hash}/12`); // instance "a/b", zstd
 * ```
 */
export function parseReadResourceName(name: string): ReadResourceName {
  checkLength(name);
  const segs = name.split("/");
  // From the right: size, hash, [digest_function], then "blobs" or "compressed-blobs"/compressor.
  let i = segs.length - 1;
  const size = segs[i--];
  const hash = segs[i--];
  if (size === undefined || hash === undefined || i < 0) {
    throw bad(name, "expected {instance}/blobs/{hash}/{size}");
  }
  let marker = segs[i];
  if (
    marker !== "blobs" && marker !== undefined && !KEYWORDS.has(marker) && segs[i - 1] !== "compressed-blobs"
  ) {
    checkDigestFunction(name, marker);
    i--;
    marker = segs[i];
  }
  let compressor: ResourceCompressor = "identity";
  if (marker === "blobs") {
    i--;
  } else if (segs[i - 1] === "compressed-blobs") {
    compressor = parseCompressor(name, marker);
    i -= 2;
  } else {
    throw bad(
      name,
      "expected {instance}/blobs/{hash}/{size} or {instance}/compressed-blobs/zstd/{hash}/{size}",
    );
  }
  const instanceName = checkInstance(name, segs.slice(0, i + 1));
  return { instanceName, compressor, digest: digestOf(name, hash, size) };
}

/**
 * Parses a ByteStream `Write` (or `QueryWriteStatus`) resource name. Throws INVALID_ARGUMENT naming what is
 * wrong.
 *
 * @example
 * ```ts
 * const hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
 * parseWriteResourceName(`main/uploads/${crypto.randomUUID()}/blobs/${hash}/12/some/metadata`);
 * ```
 */
export function parseWriteResourceName(name: string): WriteResourceName {
  checkLength(name);
  const segs = name.split("/");
  const u = segs.indexOf("uploads");
  if (u < 0) throw bad(name, "expected {instance}/uploads/{uuid}/blobs/{hash}/{size}");
  const instanceName = checkInstance(name, segs.slice(0, u));
  let i = u + 1;
  const uuid = segs[i++];
  if (uuid === undefined || uuid === "") throw bad(name, "the upload uuid is missing");
  let compressor: ResourceCompressor = "identity";
  const kind = segs[i++];
  if (kind === "compressed-blobs") {
    compressor = parseCompressor(name, segs[i++]);
  } else if (kind !== "blobs") {
    throw bad(name, `expected "blobs" or "compressed-blobs" after the uuid, got ${quoteClient(kind ?? "")}`);
  }
  let hash = segs[i++];
  if (hash !== undefined && DIGEST_FUNCTION_NAMES.has(hash)) {
    checkDigestFunction(name, hash);
    hash = segs[i++];
  }
  const size = segs[i++];
  if (hash === undefined || size === undefined) throw bad(name, "the hash or size is missing");
  return {
    instanceName,
    compressor,
    digest: digestOf(name, hash, size),
    uuid,
    metadata: segs.slice(i).join("/"),
  };
}

/** Formats a read resource name (the inverse of {@linkcode parseReadResourceName}). */
export function formatReadResourceName(r: ReadResourceName): string {
  const prefix = r.instanceName === "" ? "" : `${r.instanceName}/`;
  const kind = r.compressor === "identity" ? "blobs" : `compressed-blobs/${r.compressor}`;
  return `${prefix}${kind}/${r.digest.hash}/${r.digest.size}`;
}

/** Formats a write resource name (the inverse of {@linkcode parseWriteResourceName}). */
export function formatWriteResourceName(
  w: Omit<WriteResourceName, "metadata"> & { metadata?: string },
): string {
  const prefix = w.instanceName === "" ? "" : `${w.instanceName}/`;
  const kind = w.compressor === "identity" ? "blobs" : `compressed-blobs/${w.compressor}`;
  const meta = w.metadata ? `/${w.metadata}` : "";
  return `${prefix}uploads/${w.uuid}/${kind}/${w.digest.hash}/${w.digest.size}${meta}`;
}
