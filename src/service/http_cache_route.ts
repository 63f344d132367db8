/**
 * Bazel's HTTP cache protocol (`--remote_cache=http://…`) on the gRPC port: `GET`, `HEAD` and `PUT` of
 * `/cas/{sha256}` and `/ac/{sha256}`, optionally under an instance prefix (`/{instance}/cas/{sha256}`).
 *
 * Keying (HTTP gives only a hash, stores need `{hash, size}` for CAS blobs):
 * - CAS blobs are stored under their real digest, so they are shared with gRPC clients. The size of each
 *   blob PUT over HTTP is recorded under the string key `http-cas-size/{hash}` in the instance's AC store
 *   (and cached in memory); an HTTP GET needs that record, so blobs written only over gRPC are a 404 over
 *   HTTP (a miss: Bazel uploads them again). The empty blob is always present. The record is an encoded
 *   `ActionResult` naming the blob as its one output file ({@linkcode encodeSizeRecord}): the AC store may be
 *   a `completeness_checking` store, which reads every entry as an ActionResult (a bare number would be
 *   refused there, so HTTP blobs were lost at each restart), and which then keeps the record only while the
 *   blob is in the CAS. Records in the older decimal form are still read.
 * - AC entries (serialized `ActionResult`, as Bazel writes them) are stored under the string key
 *   `http-ac/{hash}` in the AC store: Bazel's HTTP cache reads only what HTTP clients wrote. gRPC entries are
 *   keyed by the full action digest and are not visible over HTTP, nor the other way round.
 *
 * Uploads are streamed and checked on the way against the hash in the path (`Content-Length` required, size
 * and SHA-256, also for blobs already stored and for empty bodies); a mismatch is a 400 and nothing is
 * stored or recorded. `read_only` instances refuse every PUT (403).
 *
 * @example
 * ```ts
 * import { createHttpCacheRoute } from "./http_cache_route.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const casStore = createMemoryStore();
 * const acStore = createMemoryStore();
 * const route = createHttpCacheRoute({ instances: new Map([["", { casStore, acStore }]]) });
 * const sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
 * const res = await route(new Request(`http://x/cas/${sha256}`)); // 200 with the blob, or 404
 * await res?.body?.cancel();
 * ```
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ActionResultSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Digest, EMPTY_SHA256 } from "../digest/digest.ts";
import { getBytes, has, putBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import type { HttpRoute } from "../transport/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { collectBytes, hashingStream, sizeCheckStream } from "../util/streams.ts";
import { MAX_ACTION_RESULT_BYTES } from "./action_cache_service.ts";

/** One instance of the HTTP cache. */
export interface HttpCacheInstance {
  readonly casStore: StoreDriver;
  readonly acStore: StoreDriver;
  /**
   * The AC is `read_only`: every PUT is refused (403) — PUT /cas too, as it records the blob's size in the
   * AC store.
   */
  readonly readOnly?: boolean;
}

/** Options of {@linkcode createHttpCacheRoute}. */
export interface HttpCacheRouteOptions {
  readonly instances: ReadonlyMap<string, HttpCacheInstance>;
  /** Bound of the in-memory hash → size cache (default 100 000 entries). */
  readonly sizeCacheEntries?: number;
}

const PATH = /^\/(?:(.+)\/)?(cas|ac)\/([0-9a-f]{64})$/;

/** The AC-store key recording an HTTP-uploaded CAS blob's size. */
export function httpCasSizeKey(hash: string): string {
  return `http-cas-size/${hash}`;
}

/** The AC-store key of an AC entry written over HTTP. */
export function httpAcKey(hash: string): string {
  return `http-ac/${hash}`;
}

/** The size record of an HTTP-uploaded blob: an ActionResult whose one output file is the blob. */
export function encodeSizeRecord(d: Digest): Uint8Array {
  return toBinary(
    ActionResultSchema,
    create(ActionResultSchema, {
      outputFiles: [{ path: "blob", digest: { hash: d.hash, sizeBytes: BigInt(d.size) } }],
    }),
  );
}

/** The size in a record for `hash` ({@linkcode encodeSizeRecord}, or the older decimal text); else undefined. */
export function decodeSizeRecord(hash: string, bytes: Uint8Array): number | undefined {
  if (bytes.byteLength > 0 && bytes.every((b) => b >= 0x30 && b <= 0x39)) {
    const size = Number(new TextDecoder().decode(bytes));
    return Number.isSafeInteger(size) ? size : undefined;
  }
  try {
    const digest = fromBinary(ActionResultSchema, bytes).outputFiles[0]?.digest;
    if (digest === undefined || digest.hash !== hash || digest.sizeBytes < 0n) return undefined;
    const size = Number(digest.sizeBytes);
    return Number.isSafeInteger(size) ? size : undefined;
  } catch {
    return undefined;
  }
}

function text(status: number, body: string): Response {
  return new Response(body + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

function errorResponse(err: unknown): Response {
  const e = CairnError.from(err);
  const status = e.code === Code.NotFound
    ? 404
    : e.code === Code.InvalidArgument || e.code === Code.OutOfRange
    ? 400
    : e.code === Code.PermissionDenied
    ? 403
    : e.code === Code.ResourceExhausted
    ? 507
    : e.code === Code.Unavailable
    ? 503
    : 500;
  return text(status, e.message);
}

/** Builds the HTTP cache route. */
export function createHttpCacheRoute(options: HttpCacheRouteOptions): HttpRoute {
  const maxCached = options.sizeCacheEntries ?? 100_000;
  const sizes = new Map<string, number>(); // key: instance\0hash; insertion order = LRU-ish

  const remember = (key: string, size: number) => {
    sizes.delete(key);
    sizes.set(key, size);
    if (sizes.size > maxCached) sizes.delete(sizes.keys().next().value!);
  };

  const sizeOf = async (
    instance: string,
    inst: HttpCacheInstance,
    hash: string,
  ): Promise<number | undefined> => {
    if (hash === EMPTY_SHA256) return 0;
    const cacheKey = `${instance}\u0000${hash}`;
    const cached = sizes.get(cacheKey);
    if (cached !== undefined) return cached;
    try {
      const bytes = await getBytes(inst.acStore, httpCasSizeKey(hash), { maxSize: 256 });
      const size = decodeSizeRecord(hash, bytes);
      if (size === undefined) return undefined;
      remember(cacheKey, size);
      return size;
    } catch {
      return undefined;
    }
  };

  const getCas = async (
    instance: string,
    inst: HttpCacheInstance,
    hash: string,
    head: boolean,
  ): Promise<Response> => {
    const size = await sizeOf(instance, inst, hash);
    if (size === undefined) return text(404, `Blob ${hash} not found`);
    const d: Digest = { hash, size };
    if (size === 0) {
      return new Response(head ? null : new Uint8Array(0), { headers: { "content-length": "0" } });
    }
    if (head) {
      if ((await has(inst.casStore, d)) === undefined) return text(404, `Blob ${hash} not found`);
      return new Response(null, { headers: { "content-length": String(size) } });
    }
    const body = await inst.casStore.read(d);
    return new Response(body, {
      headers: { "content-length": String(size), "content-type": "application/octet-stream" },
    });
  };

  const putCas = async (instance: string, inst: HttpCacheInstance, hash: string, request: Request) => {
    if (inst.readOnly) {
      await request.body?.cancel();
      return text(403, "The cache is read-only");
    }
    const length = request.headers.get("content-length");
    if (length === null || !/^\d+$/.test(length)) {
      await request.body?.cancel();
      return text(411, "PUT /cas needs a Content-Length");
    }
    const d: Digest = { hash, size: Number(length) };
    if (!Number.isSafeInteger(d.size)) {
      await request.body?.cancel();
      return text(400, `Content-Length ${quoteClient(length)} is too large`);
    }
    // Every body is checked against the hash in the path (size and SHA-256), even when the blob is stored
    // already: the size recorded below is what later GETs serve, so it must be the blob's real size.
    const verified = (request.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }))
      .pipeThrough(sizeCheckStream({ exact: d.size }, `PUT /cas/${hash}`))
      .pipeThrough(hashingStream((actual) => {
        if (actual !== hash) {
          throw new CairnError(
            Code.InvalidArgument,
            `Hash mismatch: the body hashes to ${actual}, not ${hash}`,
          );
        }
      }));
    if (d.size > 0 && (await has(inst.casStore, d)) === undefined) {
      await inst.casStore.write(d, verified, { exact: d.size }, { signal: request.signal, verified: true });
    } else {
      for await (const _ of verified) { /* checked on the way */ }
    }
    await putBytes(inst.acStore, httpCasSizeKey(hash), encodeSizeRecord(d));
    remember(`${instance}\u0000${hash}`, d.size);
    return new Response(null, { status: 200 });
  };

  const getAc = async (inst: HttpCacheInstance, hash: string, head: boolean) => {
    const key = httpAcKey(hash);
    if (head) {
      const size = await has(inst.acStore, key);
      if (size === undefined) return text(404, `Action result ${hash} not found`);
      return new Response(null, { headers: { "content-length": String(size) } });
    }
    const bytes = await getBytes(inst.acStore, key, { maxSize: MAX_ACTION_RESULT_BYTES });
    return new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { "content-length": String(bytes.byteLength), "content-type": "application/octet-stream" },
    });
  };

  const putAc = async (inst: HttpCacheInstance, hash: string, request: Request) => {
    if (inst.readOnly) {
      await request.body?.cancel();
      return text(403, "The action cache is read-only");
    }
    const bytes = request.body
      ? await collectBytes(request.body, MAX_ACTION_RESULT_BYTES, "action result")
      : new Uint8Array(0);
    try {
      fromBinary(ActionResultSchema, bytes);
    } catch {
      return text(400, `The body of PUT /ac/${hash} is not a serialized ActionResult`);
    }
    await putBytes(inst.acStore, httpAcKey(hash), bytes);
    return new Response(null, { status: 200 });
  };

  return async (request) => {
    const method = request.method;
    if (method !== "GET" && method !== "HEAD" && method !== "PUT") return undefined;
    const url = new URL(request.url);
    const m = PATH.exec(url.pathname);
    if (!m) return undefined;
    const instance = m[1] ?? "";
    const kind = m[2]!;
    const hash = m[3]!;
    const inst = options.instances.get(instance);
    if (inst === undefined) {
      await request.body?.cancel();
      return text(404, `Unknown instance ${quoteClient(instance)}`);
    }
    try {
      if (kind === "cas") {
        return method === "PUT"
          ? await putCas(instance, inst, hash, request)
          : await getCas(instance, inst, hash, method === "HEAD");
      }
      return method === "PUT" ? await putAc(inst, hash, request) : await getAc(inst, hash, method === "HEAD");
    } catch (err) {
      await request.body?.cancel().catch(() => {});
      return errorResponse(err);
    }
  };
}
