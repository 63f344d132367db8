/**
 * The google.bytestream.ByteStream service over the CAS: `Read`, `Write` and `QueryWriteStatus` for
 * `blobs/…` and `compressed-blobs/zstd/…` resources (see `src/digest/resource_name.ts`).
 *
 * Reads stream from the store in messages of at most `maxBytesPerStream`, honouring `read_offset` and
 * `read_limit`. Writes stream into the store without buffering the blob, hashing on the way; the store commits
 * only a blob whose size and hash match. A blob that already exists short-circuits the upload
 * (`committed_size` = size, or -1 for compressed uploads). An interrupted upload is kept for
 * `persistStreamOnDisconnectTimeoutS` so the client may resume at `QueryWriteStatus`'s `committed_size`.
 *
 * @example
 * ```ts
 * import { createByteStreamService } from "./byte_stream_service.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const casStore = createMemoryStore();
 * const impl = createByteStreamService({ instances: new Map([["", { casStore }]]) });
 * // … serve impl as ByteStream; at shutdown:
 * impl.close();
 * ```
 * @module
 */
import { recordCasLookups } from "./cache_metrics.ts";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type ByteStream,
  type ReadRequest,
  ReadRequestSchema,
  ReadResponseSchema,
} from "../gen/google/bytestream/bytestream_pb.ts";
import { decodeRequest, lengthDelimitedHeader } from "../util/proto_wire.ts";
import { type EncodedServerStream, kReleasesPieces } from "../transport/types.ts";
import { type Digest, EMPTY_SHA256, formatDigest } from "../digest/digest.ts";
import {
  parseReadResourceName,
  parseWriteResourceName,
  type WriteResourceName,
} from "../digest/resource_name.ts";
import { emptyStream, getBytes, has } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { createInstances } from "./instances.ts";
import { IoThread } from "../util/io_thread.ts";
import { readChunks } from "../util/streams.ts";
import { UploadSession } from "./upload_session.ts";
import { createZstdCompressStream } from "./zstd_stream.ts";

/** Default size of each `ReadResponse.data`. */
export const DEFAULT_MAX_BYTES_PER_STREAM = 256 * 1024;

/** Default seconds an interrupted upload waits for its client to resume (NativeLink's default). */
export const DEFAULT_PERSIST_STREAM_TIMEOUT_S = 10;

/** Uploads this large are hashed on an I/O thread (smaller ones inline: the hop would cost more). */
const THREAD_HASH_MIN_BYTES = 4 << 20;
/** Reads of at most this many bytes take the store's whole-value shortcut (`getBytes`) instead of a stream. */
const SMALL_READ_BYTES = 64 << 10;

/** Default bound on interrupted uploads kept at once (the oldest is dropped beyond it). */
export const DEFAULT_MAX_PARKED_UPLOADS = 256;

/** One instance of the ByteStream service. */
export interface ByteStreamInstance {
  readonly casStore: StoreDriver;
  /** Bytes per `ReadResponse` (config `max_bytes_per_stream`; 0 → default). */
  readonly maxBytesPerStream?: number;
  /** Config `persist_stream_on_disconnect_timeout_s` (0 → default 10). */
  readonly persistStreamOnDisconnectTimeoutS?: number;
  /** `compressed-blobs/zstd/…` resources accepted (default true; what Capabilities advertises). */
  readonly zstd?: boolean;
}

function checkZstd(inst: ByteStreamInstance, instanceName: string, compressor: string, name: string): void {
  if (compressor === "zstd" && inst.zstd === false) {
    throw new CairnError(
      Code.InvalidArgument,
      `zstd is off for instance "${instanceName}" (remote_cache_compression: false): use blobs/… instead of ${name}`,
    );
  }
}

/** Options of {@linkcode createByteStreamService}. */
export interface ByteStreamServiceOptions {
  readonly instances: ReadonlyMap<string, ByteStreamInstance>;
  /** Bound on parked (interrupted) uploads (default {@linkcode DEFAULT_MAX_PARKED_UPLOADS}). */
  readonly maxParkedUploads?: number;
  /**
   * The process's shared I/O thread (the app's), used to hash large uploads and not stopped by `close`.
   * Without it the service starts its own on the first large upload and stops it on `close`.
   */
  readonly ioThread?: IoThread;
}

/** The ByteStream implementation plus a `close()` that aborts parked uploads. */
export type ByteStreamServiceImpl = Partial<ServiceImpl<typeof ByteStream>> & {
  /** `read` on encoded messages for the gRPC fast path (no copy of the blob's bytes into messages). */
  readonly encoded: { readonly read: EncodedServerStream };
  /** Aborts every upload in progress (nothing partial is stored). */
  close(): void;
  /** Number of uploads in progress or parked (for tests and metrics). */
  readonly activeUploads: number;
};

/** Hard cap on one read message whatever the config says (gRPC's default receive limit is 4 MiB). */
const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

function isEmpty(d: Digest): boolean {
  return d.size === 0 && d.hash === EMPTY_SHA256;
}

function uploadKey(r: WriteResourceName): string {
  return `${r.instanceName}\u0000${r.uuid}\u0000${r.compressor}\u0000${formatDigest(r.digest)}`;
}

/**
 * Builds the ByteStream implementation.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const casStore = createMemoryStore();
 * const impl = createByteStreamService({
 *   instances: new Map([["main", { casStore, maxBytesPerStream: 64 * 1024 }]]),
 * });
 * impl.close();
 * ```
 */
export function createByteStreamService(options: ByteStreamServiceOptions): ByteStreamServiceImpl {
  const instances = createInstances("ByteStream", options.instances);
  const maxParked = options.maxParkedUploads ?? DEFAULT_MAX_PARKED_UPLOADS;
  const uploads = new Map<string, UploadSession>();
  /** Hashes large uploads off the main thread (the injected one, else its own, started on the first one). */
  let thread: IoThread | undefined = options.ioThread;
  const ownsThread = options.ioThread === undefined;

  const drop = (key: string, session: UploadSession, reason: unknown) => {
    session.abort(reason);
    if (uploads.get(key) === session) uploads.delete(key);
  };

  const park = (key: string, session: UploadSession, timeoutS: number) => {
    if (session.failure) {
      if (uploads.get(key) === session) uploads.delete(key);
      return;
    }
    session.park(timeoutS * 1000, () => {
      if (uploads.get(key) === session) uploads.delete(key);
    });
    // Bound the parked set: drop the oldest parked sessions beyond the limit.
    let parked = 0;
    for (const s of uploads.values()) if (!s.attached) parked++;
    for (const [k, s] of uploads) {
      if (parked <= maxParked) break;
      if (!s.attached) {
        drop(
          k,
          s,
          new CairnError(Code.ResourceExhausted, "Too many interrupted uploads: dropped the oldest"),
        );
        parked--;
      }
    }
  };

  /** The blob's bytes for a ReadRequest, in pieces of at most the instance's `max_bytes_per_stream`. */
  async function* readData(
    req: ReadRequest,
    signal: AbortSignal,
    reuse: boolean,
  ): AsyncGenerator<Uint8Array> {
    const r = parseReadResourceName(req.resourceName);
    const inst = instances.get(r.instanceName);
    checkZstd(inst, r.instanceName, r.compressor, req.resourceName);
    const offset = Number(req.readOffset);
    const limit = Number(req.readLimit);
    const d = r.digest;
    if (offset < 0 || offset > d.size) {
      throw new CairnError(
        Code.OutOfRange,
        `Invalid read_offset ${offset} for ${quoteClient(req.resourceName)}: the blob has ${d.size} bytes`,
      );
    }
    if (limit < 0) {
      throw new CairnError(Code.InvalidArgument, `Invalid read_limit ${limit}: must not be negative`);
    }
    if (r.compressor !== "identity" && limit !== 0) {
      throw new CairnError(
        Code.InvalidArgument,
        `read_limit must be 0 when reading compressed blobs (got ${limit})`,
      );
    }
    const configured = inst.maxBytesPerStream || DEFAULT_MAX_BYTES_PER_STREAM;
    const chunkSize = Math.min(Math.max(configured, 1024), MAX_MESSAGE_BYTES);
    const wanted = Math.min(d.size - offset, limit > 0 ? limit : Infinity);
    if (r.compressor === "identity" && wanted > 0 && wanted <= SMALL_READ_BYTES) {
      // A small blob in one piece: the store's whole-value shortcut, no stream.
      let data: Uint8Array;
      try {
        data = await getBytes(inst.casStore, d, {
          offset,
          ...(limit > 0 ? { length: limit } : {}),
          signal,
          maxSize: wanted,
        });
        recordCasLookups(r.instanceName, "Read", 1, 1);
      } catch (err) {
        if (err instanceof CairnError && err.code === Code.NotFound) {
          recordCasLookups(r.instanceName, "Read", 1, 0);
        }
        throw CairnError.from(err, `Cannot read ${quoteClient(req.resourceName)}`);
      }
      for (let pos = 0; pos < data.byteLength; pos += chunkSize) yield data.subarray(pos, pos + chunkSize);
      return;
    }
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = isEmpty(d) ? emptyStream() : await inst.casStore.read(d, {
        offset,
        ...(limit > 0 ? { length: limit } : {}),
        signal,
      });
      recordCasLookups(r.instanceName, "Read", 1, 1);
    } catch (err) {
      if (err instanceof CairnError && err.code === Code.NotFound) {
        recordCasLookups(r.instanceName, "Read", 1, 0);
      }
      throw err;
    }
    if (r.compressor === "zstd") stream = stream.pipeThrough(createZstdCompressStream());
    try {
      // A file is read straight into the messages' buffers, one message ahead of the transport.
      yield* readChunks(stream, chunkSize, reuse);
    } catch (err) {
      throw CairnError.from(err, `Cannot read ${quoteClient(req.resourceName)}`);
    }
  }

  const impl: ByteStreamServiceImpl = {
    encoded: {
      /** Read on encoded messages: each ReadResponse is its `data` field's header and the bytes as read. */
      async *read(bytes, ctx) {
        const req = decodeRequest(ReadRequestSchema, bytes);
        const reuse = ctx.values.get(kReleasesPieces);
        for await (const data of readData(req, ctx.signal, reuse)) {
          yield [dataFieldHeader(data.byteLength), data];
        }
      },
    },

    get activeUploads() {
      return uploads.size;
    },

    close() {
      for (const [key, s] of uploads) {
        drop(key, s, new CairnError(Code.Unavailable, "Server is shutting down"));
      }
      if (ownsThread) {
        thread?.close();
        thread = undefined;
      }
    },

    read(req, ctx) {
      return readMessages(readData(req, ctx.signal, false));
    },

    async write(requests, ctx) {
      let session: UploadSession | undefined;
      let key = "";
      let name = "";
      let resource: WriteResourceName | undefined;
      let expected = 0;
      let timeoutS = DEFAULT_PERSIST_STREAM_TIMEOUT_S;
      let finished = false;
      try {
        for await (const req of requests) {
          if (resource === undefined) {
            if (req.resourceName === "") {
              throw new CairnError(Code.InvalidArgument, "The first WriteRequest must carry a resource_name");
            }
            name = req.resourceName;
            resource = parseWriteResourceName(name);
            const inst = instances.get(resource.instanceName);
            checkZstd(inst, resource.instanceName, resource.compressor, name);
            timeoutS = inst.persistStreamOnDisconnectTimeoutS || DEFAULT_PERSIST_STREAM_TIMEOUT_S;
            const d = resource.digest;
            const offset = Number(req.writeOffset);
            const already = resource.compressor === "identity" ? BigInt(d.size) : -1n;
            key = uploadKey(resource);
            const existing = uploads.get(key);
            if (existing?.attached) {
              throw new CairnError(
                Code.Aborted,
                `Upload ${quoteClient(name)} is already in progress on another stream`,
              );
            }
            if (offset < 0) {
              throw new CairnError(
                Code.InvalidArgument,
                `Invalid write_offset ${offset} for ${quoteClient(name)}`,
              );
            }
            if (offset === 0 || existing === undefined) {
              if (existing) {
                drop(key, existing, new CairnError(Code.Aborted, `Upload ${quoteClient(name)} restarted`));
              }
              if (isEmpty(d) || (await has(inst.casStore, d)) !== undefined) {
                finished = true;
                return { committedSize: already };
              }
              if (offset !== 0) {
                throw new CairnError(
                  Code.InvalidArgument,
                  `Invalid write_offset ${offset} for ${
                    quoteClient(name)
                  }: no upload is in progress (committed_size is 0)`,
                );
              }
              session = new UploadSession({
                store: inst.casStore,
                digest: d,
                compressor: resource.compressor,
                what: quoteClient(name),
                ...(d.size >= THREAD_HASH_MIN_BYTES ? { thread: thread ??= new IoThread() } : {}),
              });
              uploads.set(key, session);
            } else {
              if (offset > existing.received) {
                throw new CairnError(
                  Code.InvalidArgument,
                  `Invalid write_offset ${offset} for ${
                    quoteClient(name)
                  }: only ${existing.received} bytes were committed`,
                );
              }
              session = existing;
            }
            session.resume();
            expected = offset;
          } else if (req.resourceName !== "" && req.resourceName !== name) {
            throw new CairnError(
              Code.InvalidArgument,
              `WriteRequest resource_name changed mid-stream from ${quoteClient(name)} to ${
                quoteClient(req.resourceName)
              }`,
            );
          } else if (Number(req.writeOffset) !== expected) {
            throw new CairnError(
              Code.InvalidArgument,
              `Invalid write_offset ${req.writeOffset} for ${quoteClient(name)}: expected ${expected}`,
            );
          }
          if (session === undefined) throw new CairnError(Code.Internal, "Upload session missing");
          let data = req.data;
          const overlap = session.received - expected;
          if (overlap > 0) data = data.subarray(Math.min(overlap, data.byteLength));
          expected += req.data.byteLength;
          if (data.byteLength > 0) await session.push(data);
          if (req.finishWrite) {
            await session.finish();
            finished = true;
            if (uploads.get(key) === session) uploads.delete(key);
            return {
              committedSize: session.compressor === "identity"
                ? BigInt(session.digest.size)
                : BigInt(session.received),
            };
          }
        }
        if (session === undefined) {
          throw new CairnError(Code.InvalidArgument, "The Write stream carried no request");
        }
        throw new CairnError(
          Code.InvalidArgument,
          `The Write stream for ${
            quoteClient(name)
          } ended without finish_write after ${session.received} bytes; ` +
            `resume within ${timeoutS}s at write_offset ${session.received}`,
        );
      } catch (err) {
        const e = ctx.signal.aborted && !(err instanceof CairnError)
          ? new CairnError(Code.Cancelled, `Write of ${quoteClient(name)} cancelled by the client`, {
            cause: err,
          })
          : CairnError.from(err, `Cannot write ${quoteClient(name)}`);
        // A failed pipeline is dropped by park(); an intact one waits for the client to resume.
        if (session !== undefined && !finished) park(key, session, timeoutS);
        throw e;
      }
    },

    async queryWriteStatus(req) {
      const resource = parseWriteResourceName(req.resourceName);
      const inst = instances.get(resource.instanceName);
      const session = uploads.get(uploadKey(resource));
      if (session !== undefined && !session.failure) {
        return { committedSize: BigInt(session.received), complete: false };
      }
      const d = resource.digest;
      if (isEmpty(d) || (await has(inst.casStore, d)) !== undefined) {
        return { committedSize: BigInt(d.size), complete: true };
      }
      return { committedSize: 0n, complete: false };
    },
  };
  return impl;
}

async function* readMessages(data: AsyncIterable<Uint8Array>): AsyncGenerator<{ data: Uint8Array }> {
  for await (const bytes of data) yield { data: bytes };
}

const READ_RESPONSE_DATA = ReadResponseSchema.field.data.number;

/** The wire header of `ReadResponse.data` for `length` bytes. */
function dataFieldHeader(length: number): Uint8Array {
  return lengthDelimitedHeader(READ_RESPONSE_DATA, length);
}
