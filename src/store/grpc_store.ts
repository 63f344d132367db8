/**
 * The `grpc` store: a {@linkcode StoreDriver} backed by another REAPI server (NativeLink, Cairn, Buildbarn…).
 *
 * `store_type: "cas"` maps `hasMany` to FindMissingBlobs (sizes come from the key digests), `read` to
 * ByteStream Read (with offset and limit; an interrupted read resumes at the delivered offset) and
 * `write` to BatchUpdateBlobs for small blobs or a streamed ByteStream Write
 * (`{instance}/uploads/{uuid}/blobs/{hash}/{size}`, ≤ 1 MiB messages pulled from the source only as fast as
 * HTTP/2 accepts them). Action-cache keys (`{ ac: actionDigest }`) map `read` to GetActionResult (the
 * ActionResult encoded to bytes), `write` to UpdateActionResult (the bytes decoded) and `hasMany` to
 * GetActionResult. The key's type decides, never a parsed string: `store_type` (`cas` or `ac`) is NativeLink's
 * and says what the store is meant for. String keys (records without a digest) are refused (INVALID_ARGUMENT).
 *
 * Clients use connect-node's gRPC transport over HTTP/2 (`grpc://` → h2c, `grpcs://` → TLS with the
 * optional `tls_config` `ca_file` / `cert_file` / `key_file`). Requests are spread round-robin over
 * `endpoints × connections_per_endpoint` connections, limited by `max_concurrent_requests`, and retried on
 * transient codes per `retry` (`max_retries`, `delay`, `jitter`, `retry_on_errors`). Streaming uploads are
 * never replayed (their source is consumed once).
 *
 * @example
 * ```ts
 * import { createGrpcStore } from "./grpc_store.ts";
 * const cas = createGrpcStore({
 *   instance_name: "main",
 *   endpoints: [{ address: "grpc://127.0.0.1:50051" }],
 *   store_type: "cas",
 * });
 * const [size] = await cas.hasMany([{ hash: "e3b0…", size: 0 }]);
 * await cas.close();
 * ```
 * @module
 */
import { DEFAULT_RETRY_CODES, parseCodeName, Retrier } from "./retry.ts";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { createGrpcClient, type GrpcClient } from "../transport/grpc_client.ts";
import { delay, Semaphore } from "../util/async.ts";
import { type Digest, formatDigest } from "../digest/digest.ts";
import {
  ActionCache,
  ActionResultSchema,
  ContentAddressableStorage,
  type Digest as ProtoDigest,
  DigestSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream, type WriteRequest, WriteRequestSchema } from "../gen/google/bytestream/bytestream_pb.ts";
import { CairnError, Code } from "../util/error.ts";
import { bytesStream, cancelled, collectBytes, sizeCheckStream } from "../util/streams.ts";
import { beginUpload, isAcKey, uploadLimit } from "./helpers.ts";
import type { StoreBuildContext } from "./registry.ts";
import type { GrpcEndpoint, StoreKinds } from "../config/types.ts";
import type { AcKey, ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** One upstream endpoint (NativeLink's `GrpcEndpoint`), as the config schema types it. */
export type GrpcEndpointSpec = GrpcEndpoint;

/**
 * The `grpc` store spec (NativeLink's `GrpcSpec`), as the config schema types it; `instance_name` may be left
 * out when built from code (default `""`). Field meanings and defaults: `src/config/nativelink_schema.ts`.
 */
export type GrpcStoreSpec = Omit<StoreKinds["grpc"], "instance_name"> & { readonly instance_name?: string };

/** Blobs up to this size are uploaded with BatchUpdateBlobs instead of a ByteStream Write. */
export const BATCH_UPLOAD_MAX = 64 * 1024;
/** Largest `data` of one ByteStream WriteRequest. */
export const WRITE_CHUNK_MAX = 1024 * 1024;
/** Digests per FindMissingBlobs call. */
const FIND_MISSING_BATCH = 4096;
/** Largest ActionResult the AC side accepts for writing. */
const AC_MAX = 64 * 1024 * 1024;

/** The registry factory of the `grpc` kind. */
export function grpcStoreFactory(fields: StoreKinds["grpc"], ctx: StoreBuildContext): StoreDriver {
  const storeType = ctx.string(fields, "store_type");
  if (storeType !== "cas" && storeType !== "ac") {
    throw ctx.error(`store_type must be "cas" or "ac", got ${JSON.stringify(storeType)}`);
  }
  const endpoints = fields["endpoints"];
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw ctx.error("endpoints must list at least one endpoint");
  }
  try {
    return createGrpcStore(fields);
  } catch (err) {
    throw ctx.error(err instanceof Error ? err.message : String(err));
  }
}

/** Builds a `grpc` store. Connections open lazily on the first request. */
export function createGrpcStore(spec: GrpcStoreSpec): GrpcStore {
  return new GrpcStore(spec);
}

interface Connection {
  readonly manager: Http2SessionManager;
  readonly cas: Client<typeof ContentAddressableStorage>;
  readonly ac: Client<typeof ActionCache>;
  readonly bytestream: Client<typeof ByteStream>;
}

/** A store talking REAPI to an upstream server. */
export class GrpcStore implements StoreDriver {
  readonly kind = "grpc";
  #instance: string;
  #storeType: "cas" | "ac";
  #connections: Connection[] = [];
  #next = 0;
  readonly #requests: Semaphore;
  readonly #retrier: Retrier;
  #timeoutMs: number | undefined;
  #headers: Readonly<Record<string, string>>;
  #closed = false;

  constructor(spec: GrpcStoreSpec) {
    if (spec.store_type !== "cas" && spec.store_type !== "ac") {
      throw new CairnError(
        Code.InvalidArgument,
        `store_type must be "cas" or "ac", got ${String(spec.store_type)}`,
      );
    }
    if (!spec.endpoints?.length) {
      throw new CairnError(Code.InvalidArgument, "endpoints must list at least one endpoint");
    }
    this.#instance = spec.instance_name ?? "";
    this.#storeType = spec.store_type;
    this.#requests = new Semaphore(spec.max_concurrent_requests || 0);
    this.#retrier = new Retrier({
      maxRetries: spec.retry?.max_retries ?? 0,
      delay: spec.retry?.delay ?? 0,
      jitter: spec.retry?.jitter ?? 0,
      codes: new Set(
        spec.retry?.retry_on_errors?.length ? spec.retry.retry_on_errors.map(retryCode) : DEFAULT_RETRY_CODES,
      ),
    });
    this.#timeoutMs = spec.rpc_timeout_s ? spec.rpc_timeout_s * 1000 : undefined;
    this.#headers = spec.headers ?? {};
    const perEndpoint = Math.max(1, spec.connections_per_endpoint ?? 1);
    for (const endpoint of spec.endpoints) {
      for (let i = 0; i < perEndpoint; i++) this.#connections.push(connect(endpoint));
    }
  }

  /** The store type (`cas` or `ac`). */
  get storeType(): "cas" | "ac" {
    return this.#storeType;
  }

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const out: (number | undefined)[] = keys.map(() => undefined);
    const blobIdx: number[] = [];
    const acIdx: number[] = [];
    for (const [i, k] of keys.entries()) (this.#isAc(k) ? acIdx : blobIdx).push(i);
    await Promise.all([
      ...acIdx.map(async (i) => {
        try {
          out[i] = (await this.#getActionResult((keys[i] as AcKey).ac)).byteLength;
        } catch (err) {
          if (!(err instanceof CairnError && err.code === Code.NotFound)) throw err;
        }
      }),
      (async () => {
        const sizes = await this.#findBlobs(blobIdx.map((i) => keys[i] as Digest));
        blobIdx.forEach((i, j) => (out[i] = sizes[j]));
      })(),
    ]);
    return out;
  }

  /** Sizes of CAS blobs (FindMissingBlobs: the sizes are the digests'). */
  async #findBlobs(digests: readonly Digest[]): Promise<(number | undefined)[]> {
    const out: (number | undefined)[] = digests.map((d) => d.size);
    for (let start = 0; start < digests.length; start += FIND_MISSING_BATCH) {
      const batch = digests.slice(start, start + FIND_MISSING_BATCH);
      const nonEmpty = batch.filter((d) => d.size > 0);
      if (nonEmpty.length === 0) continue;
      const res = await this.#call("FindMissingBlobs", (c, o) =>
        c.cas.findMissingBlobs({
          instanceName: this.#instance,
          blobDigests: nonEmpty.map(toProto),
        }, o));
      const missing = new Set(res.missingBlobDigests.map((d) => `${d.hash}-${d.sizeBytes}`));
      batch.forEach((d, i) => {
        if (missing.has(formatDigest(d))) out[start + i] = undefined;
      });
    }
    return out;
  }

  async read(key: StoreKey, options: ReadOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const ac = this.#isAc(key);
    const digest = ac ? key.ac : key as Digest;
    const offset = options.offset ?? 0;
    if (offset < 0 || (options.length ?? 0) < 0) {
      throw new CairnError(
        Code.InvalidArgument,
        `Invalid read range of ${formatDigest(digest)}: negative offset or length`,
      );
    }
    if (ac) {
      const bytes = await this.#getActionResult(digest);
      if (offset > bytes.byteLength) throw outOfRange(digest, offset, bytes.byteLength);
      const end = options.length === undefined
        ? bytes.byteLength
        : Math.min(bytes.byteLength, offset + options.length);
      return bytesStream(bytes.subarray(offset, end));
    }
    if (offset > digest.size) throw outOfRange(digest, offset, digest.size);
    const end = options.length === undefined ? digest.size : Math.min(digest.size, offset + options.length);
    if (end === offset) {
      // Still confirm existence so an absent blob is NOT_FOUND.
      if (digest.size > 0 && (await this.hasMany([digest]))[0] === undefined) throw notFound(digest);
      return bytesStream(new Uint8Array(0));
    }
    return await this.#openRead(digest, offset, end, options.signal);
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options: WriteOptions = {},
  ): Promise<void> {
    await beginUpload(key, data, size, () => this.#isAc(key));
    const ac = isAcKey(key);
    const digest = ac ? key.ac : key as Digest;
    if (ac) {
      const bytes = await collectBytes(
        data.pipeThrough(sizeCheckStream(size)),
        Math.min(uploadLimit(size), AC_MAX),
      );
      let result;
      try {
        result = fromBinary(ActionResultSchema, bytes);
      } catch (err) {
        throw new CairnError(
          Code.InvalidArgument,
          `Cannot store ${formatDigest(digest)}: not an ActionResult`,
          {
            cause: err,
          },
        );
      }
      await this.#call(
        "UpdateActionResult",
        (c, o) =>
          c.ac.updateActionResult({
            instanceName: this.#instance,
            actionDigest: toProto(digest),
            actionResult: result,
          }, o),
      );
      return;
    }
    const checked = data.pipeThrough(sizeCheckStream({ exact: digest.size }, formatDigest(digest)));
    if (digest.size <= BATCH_UPLOAD_MAX) {
      const bytes = await collectBytes(checked, digest.size, formatDigest(digest));
      if (options.signal?.aborted) throw cancelled(options.signal, "Upload");
      const res = await this.#call("BatchUpdateBlobs", (c, o) =>
        c.cas.batchUpdateBlobs({
          instanceName: this.#instance,
          requests: [{ digest: toProto(digest), data: bytes }],
        }, o), options.signal);
      const status = res.responses[0]?.status;
      if (status && status.code !== Code.Ok) {
        throw new CairnError(
          status.code as Code,
          `Upstream refused ${formatDigest(digest)}: ${status.message}`,
        );
      }
      return;
    }
    await this.#streamWrite(digest, checked, options.signal);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const c of this.#connections) c.manager.abort();
    }
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------------------------------

  async #streamWrite(digest: Digest, data: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<void> {
    const resource = `${this.#prefix()}uploads/${crypto.randomUUID()}/blobs/${digest.hash}/${digest.size}`;
    const reader = data.getReader();
    let sent = 0;
    let done = false;
    let sourceError: unknown;
    const readSource = async () => {
      try {
        return await reader.read();
      } catch (err) {
        sourceError = err;
        throw err;
      }
    };
    async function* requests(): AsyncGenerator<WriteRequest> {
      let first = true;
      let pending: Uint8Array | undefined;
      for (;;) {
        if (pending === undefined || pending.byteLength === 0) {
          const next = await readSource();
          if (next.done) {
            done = true;
            yield create(WriteRequestSchema, {
              resourceName: first ? resource : "",
              writeOffset: BigInt(sent),
              finishWrite: true,
              data: new Uint8Array(0),
            });
            return;
          }
          pending = next.value;
          continue;
        }
        const chunk = pending.subarray(0, WRITE_CHUNK_MAX);
        pending = pending.subarray(chunk.byteLength);
        const last = sent + chunk.byteLength === digest.size;
        // Learn whether the source is really at its end before claiming finish_write.
        if (last && pending.byteLength === 0) {
          const next = await readSource();
          if (!next.done) {
            pending = next.value;
          } else {
            done = true;
          }
        }
        const finish = last && done;
        yield create(WriteRequestSchema, {
          resourceName: first ? resource : "",
          writeOffset: BigInt(sent),
          finishWrite: finish,
          data: chunk,
        });
        first = false;
        sent += chunk.byteLength;
        if (finish) return;
      }
    }
    try {
      const res = await this.#call(
        "ByteStream.Write",
        (c, o) => c.bytestream.write(requests(), o),
        signal,
        false,
      );
      if (res.committedSize !== BigInt(digest.size) && res.committedSize !== -1n) {
        throw new CairnError(
          Code.DataLoss,
          `Upstream committed ${res.committedSize} of ${digest.size} bytes for ${formatDigest(digest)}`,
        );
      }
    } catch (err) {
      await reader.cancel(err).catch(() => {});
      if (sourceError !== undefined && !signal?.aborted) {
        throw CairnError.from(sourceError, "Upload source failed");
      }
      throw err;
    } finally {
      reader.releaseLock();
    }
  }

  async #openRead(
    digest: Digest,
    start: number,
    end: number,
    signal?: AbortSignal,
  ): Promise<ReadableStream<Uint8Array>> {
    const resource = `${this.#prefix()}blobs/${digest.hash}/${digest.size}`;
    let position = start;
    let retries = 0;
    let release: (() => void) | undefined;
    let iterator: AsyncIterator<{ data: Uint8Array }> | undefined;
    let abort: AbortController | undefined;
    const open = async (): Promise<IteratorResult<{ data: Uint8Array }>> => {
      for (;;) {
        release ??= await this.#acquire();
        abort = new AbortController();
        const onAbort = () => abort?.abort(signal?.reason);
        if (signal?.aborted) onAbort();
        signal?.addEventListener("abort", onAbort, { once: true });
        const conn = this.#pick();
        iterator = conn.bytestream.read({
          resourceName: resource,
          readOffset: BigInt(position),
          readLimit: BigInt(end - position),
        }, { signal: abort.signal, headers: this.#headers })[Symbol.asyncIterator]();
        try {
          return await iterator.next();
        } catch (err) {
          const e = this.#map(err, `ByteStream.Read of ${formatDigest(digest)}`);
          if (signal?.aborted) throw cancelled(signal, "Read");
          if (this.#retrier.retriable(e, retries)) {
            await delay(this.#retrier.backoffMs(retries++));
            continue;
          }
          throw e;
        }
      }
    };
    const finish = () => {
      release?.();
      release = undefined;
    };
    let first: IteratorResult<{ data: Uint8Array }>;
    try {
      first = await open();
    } catch (err) {
      finish();
      throw err;
    }
    let buffered: IteratorResult<{ data: Uint8Array }> | undefined = first;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        for (;;) {
          let next: IteratorResult<{ data: Uint8Array }>;
          if (buffered) {
            next = buffered;
            buffered = undefined;
          } else {
            try {
              next = await iterator!.next();
            } catch (err) {
              const e = this.#map(err, `ByteStream.Read of ${formatDigest(digest)}`);
              if (this.#retrier.retriable(e, retries, signal) && position < end) {
                await delay(this.#retrier.backoffMs(retries++));
                try {
                  next = await open();
                } catch (err2) {
                  finish();
                  controller.error(err2);
                  return;
                }
              } else {
                finish();
                controller.error(signal?.aborted ? cancelled(signal, "Read") : e);
                return;
              }
            }
          }
          if (next.done) {
            finish();
            if (position !== end) {
              controller.error(
                new CairnError(
                  Code.DataLoss,
                  `Upstream ended ${formatDigest(digest)} at byte ${position}, expected ${end}`,
                ),
              );
            } else {
              controller.close();
            }
            return;
          }
          const data = next.value.data;
          if (data.byteLength === 0) continue;
          const take = data.byteLength > end - position ? data.subarray(0, end - position) : data;
          position += take.byteLength;
          controller.enqueue(take);
          if (position >= end) {
            abort?.abort();
            finish();
            controller.close();
          }
          return;
        }
      },
      cancel: () => {
        abort?.abort();
        finish();
      },
    }, { highWaterMark: 0 });
  }

  async #getActionResult(digest: Digest): Promise<Uint8Array> {
    const res = await this.#call("GetActionResult", (c, o) =>
      c.ac.getActionResult({
        instanceName: this.#instance,
        actionDigest: toProto(digest),
        inlineStdout: false,
        inlineStderr: false,
      }, o));
    return toBinary(ActionResultSchema, res);
  }

  /** Runs one unary/client-streaming RPC under the concurrency limit, with retries when `retry` is set. */
  async #call<T>(
    what: string,
    fn: (
      c: Connection,
      options: { signal?: AbortSignal; headers: Record<string, string>; timeoutMs?: number },
    ) => Promise<T>,
    signal?: AbortSignal,
    retry = true,
  ): Promise<T> {
    if (this.#closed) throw new CairnError(Code.Unavailable, `Cannot call ${what}: the grpc store is closed`);
    const once = async () => {
      const release = await this.#acquire();
      try {
        const options: { signal?: AbortSignal; headers: Record<string, string>; timeoutMs?: number } = {
          headers: { ...this.#headers },
        };
        if (signal) options.signal = signal;
        if (this.#timeoutMs !== undefined) options.timeoutMs = this.#timeoutMs;
        return await fn(this.#pick(), options);
      } catch (err) {
        if (signal?.aborted) throw cancelled(signal, what);
        throw this.#map(err, what);
      } finally {
        release();
      }
    };
    return retry ? await this.#retrier.run(once, signal) : await once();
  }

  #map(err: unknown, what: string): CairnError {
    if (err instanceof CairnError) return err;
    if (err instanceof ConnectError) {
      return new CairnError(err.code as number as Code, `${what} failed upstream: ${err.rawMessage}`, {
        cause: err,
      });
    }
    return CairnError.from(err, what);
  }

  #pick(): Connection {
    const c = this.#connections[this.#next++ % this.#connections.length]!;
    return c;
  }

  #acquire(): Promise<() => void> {
    return this.#requests.acquire();
  }

  #prefix(): string {
    return this.#instance ? `${this.#instance}/` : "";
  }

  /** True for an action-cache key, false for a CAS digest; INVALID_ARGUMENT for a string key. */
  #isAc(key: StoreKey): key is AcKey {
    if (typeof key === "string") {
      throw new CairnError(
        Code.InvalidArgument,
        `The grpc store holds digests and action-cache keys only, got the string key "${key}"`,
      );
    }
    return isAcKey(key);
  }
}

function connect(endpoint: GrpcEndpointSpec): Connection {
  let client: GrpcClient;
  try {
    client = createGrpcClient(endpoint.address ?? "", {
      tls: endpoint.tls_config,
      pingIntervalMs: (endpoint.http2_keepalive_interval_s || 30) * 1000,
      pingTimeoutMs: (endpoint.http2_keepalive_timeout_s || 20) * 1000,
      idleConnectionTimeoutMs: 60_000,
    });
  } catch (err) {
    const e = CairnError.from(err);
    throw new CairnError(
      e.code,
      `Invalid endpoint address ${JSON.stringify(endpoint.address)}: ${e.message}`,
      {
        cause: err,
      },
    );
  }
  const transport = client.transport;
  return {
    manager: client.session,
    cas: createClient(ContentAddressableStorage, transport),
    ac: createClient(ActionCache, transport),
    bytestream: createClient(ByteStream, transport),
  };
}

function toProto(d: Digest): ProtoDigest {
  return create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
}

function notFound(d: Digest): CairnError {
  return new CairnError(Code.NotFound, `Blob ${formatDigest(d)} not found in store "grpc"`);
}

function outOfRange(d: Digest, offset: number, size: number): CairnError {
  return new CairnError(
    Code.OutOfRange,
    `Read offset ${offset} is past the end of ${formatDigest(d)} (${size} bytes)`,
  );
}

function retryCode(name: string): Code {
  const code = parseCodeName(name);
  if (code === undefined) {
    throw new CairnError(Code.InvalidArgument, `Unknown gRPC code "${name}" in retry_on_errors`);
  }
  return code;
}
