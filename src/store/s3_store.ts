/**
 * `experimental_cloud_object_store` with `provider: "aws"` (and the older `experimental_s3_store`): values
 * kept as objects in an S3 bucket (or an S3-compatible server), on `@aws-sdk/client-s3`.
 *
 * An object's key is `{key_prefix}{name}` (`hash-size`, `ac/hash-size`, `str/text`). Uploads stream: a value
 * that fits in one part (8 MiB) is one PutObject; a larger one of announced (exact) size up to 100 MiB (AWS's
 * suggested multipart threshold) is one PutObject whose body is the source stream itself, counted on the way
 * (no copy, nothing held; a source longer or shorter than announced aborts the request, so no object); any
 * other is a multipart upload of 8 MiB parts with at most `multipart_max_concurrent_uploads` parts in
 * flight (so at most that many parts in memory), completed only once the whole stream is in and its size
 * checked, and aborted on any error — S3 makes the object visible atomically on completion (or at the end
 * of a PutObject), so nothing partial is ever visible. A streamed PutObject is not retried (its bytes are
 * consumed); buffered PutObjects and parts are. Reads are ranged GETs; existence is
 * HEAD (bounded concurrency). An object whose length is not the digest's size (a truncated CAS object) is
 * NOT_FOUND, never served.
 *
 * Endpoint: `endpoint` in the config, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS's own;
 * an overridden endpoint uses path-style addressing. Credentials come from the AWS SDK's standard chain
 * (environment, shared config/credentials files and profiles, web identity, container and instance roles),
 * resolved once at start: none found is one clear error. A server that is down is no error at start;
 * requests report UNAVAILABLE naming the store, and work again when it is back.
 *
 * @example
 * ```ts ignore
 * import { createS3Store } from "./s3_store.ts";
 * const store = createS3Store({ bucket: "cas", region: "us-east-1", keyPrefix: "cas/0/" });
 * await store.init?.({ get: () => store });
 * ```
 * @module
 */
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { CairnError, Code } from "../util/error.ts";
import {
  backendKeyName,
  emptyStream,
  expectedUploadSize,
  isDigestKey,
  keyToString,
  notFoundError,
  resolveRange,
  uploadLimit,
} from "./helpers.ts";
import type { StoreBuildContext } from "./registry.ts";
import type { StoreKinds } from "../config/types.ts";
import { asWriteError, readInParts, readOrAbort, readToEnd, sizeMismatch, sizeOver } from "./upload_parts.ts";
import { NO_RETRY, Retrier, type RetryPolicy, retryPolicyFrom } from "./retry.ts";
import type { ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** Options of {@linkcode createS3Store}. */
export interface S3StoreOptions {
  readonly bucket: string;
  /** Default `AWS_REGION`, else `us-east-1`. */
  readonly region?: string;
  readonly keyPrefix?: string;
  /** An S3-compatible endpoint; default from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`. */
  readonly endpoint?: string;
  readonly retry?: RetryPolicy;
  /** Parts in flight per multipart upload. Default 10. */
  readonly multipartMaxConcurrentUploads?: number;
  /** Part size of multipart uploads (and the buffered single-PutObject limit). Default 8 MiB. */
  readonly partSize?: number;
  /**
   * Values of exact size above `partSize` and up to this go up as one PutObject streaming the source
   * (0: never; multipart instead). Default 100 MiB.
   */
  readonly streamedPutMaxSize?: number;
  /** The top-level store name, for messages. */
  readonly storeName?: string;
  /** Explicit credentials (tests); default: the SDK's standard chain. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** Largest value streamed as one PutObject by default: AWS suggests multipart from about 100 MB. */
export const DEFAULT_STREAMED_PUT_MAX = 100 * 1024 * 1024;

/** Default part size: 8 MiB (S3's minimum is 5 MiB). */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
/** HEAD requests in flight for one `hasMany`. */
const HEAD_CONCURRENCY = 32;

/** The registry factory of `experimental_cloud_object_store` (provider `aws`) and `experimental_s3_store`. */
export function s3StoreFactory(
  fields: StoreKinds["experimental_cloud_object_store"],
  ctx: StoreBuildContext,
): StoreDriver {
  const provider = ctx.string(fields, "provider", "aws");
  if (provider !== "aws") throw ctx.error(`provider "${provider}" is not supported by Cairn yet; use "aws"`);
  const bucket = ctx.string(fields, "bucket");
  if (!bucket) throw ctx.error("bucket is empty");
  const region = ctx.string(fields, "region", "");
  const endpoint = ctx.string(fields, "endpoint", "");
  const concurrency = ctx.number(fields, "multipart_max_concurrent_uploads", 10);
  return createS3Store({
    bucket,
    ...(region ? { region } : {}),
    keyPrefix: ctx.string(fields, "key_prefix", ""),
    ...(endpoint ? { endpoint } : {}),
    retry: retryPolicyFrom(fields, ctx),
    multipartMaxConcurrentUploads: concurrency || 10,
    storeName: ctx.storeName,
  });
}

/** Builds an S3 store. No request is made until `init` (credentials) and the first operation. */
export function createS3Store(options: S3StoreOptions): S3Store {
  return new S3Store(options);
}

/** A store on an S3 bucket. */
export class S3Store implements StoreDriver {
  readonly kind = "experimental_cloud_object_store";
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #retrier: Retrier;
  readonly #concurrency: number;
  readonly #partSize: number;
  readonly #where: string;
  readonly #stats = { putObjects: 0, multipartUploads: 0, parts: 0 };
  readonly #streamedPutMax: number;

  /** Uploads done so far: single PutObjects, completed multipart uploads, and their parts. */
  get stats(): { readonly putObjects: number; readonly multipartUploads: number; readonly parts: number } {
    return { ...this.#stats };
  }

  constructor(options: S3StoreOptions) {
    const env = (name: string) => {
      try {
        return Deno.env.get(name) || undefined;
      } catch {
        return undefined;
      }
    };
    const endpoint = options.endpoint ?? env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL");
    const config: S3ClientConfig = {
      region: options.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1",
      // Retries are ours (NativeLink's `retry`); checksums cost CPU the digest already covers.
      maxAttempts: 1,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // With a logger of its own the SDK logs every failed command (errors are ours to report, mapped),
      // and without one it warns on the console for every failed streamed PutObject (already this write's
      // error). Other warnings pass.
      logger: {
        trace: () => {},
        debug: () => {},
        info: () => {},
        warn: (...args: unknown[]) => {
          if (!String(args[0]).includes("non-retryable streaming request")) console.warn(...args);
        },
        error: () => {},
      },
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
    };
    this.#client = new S3Client(config);
    this.#bucket = options.bucket;
    this.#prefix = options.keyPrefix ?? "";
    this.#retrier = new Retrier(options.retry ?? NO_RETRY);
    this.#concurrency = Math.max(1, options.multipartMaxConcurrentUploads ?? 10);
    this.#partSize = Math.max(1, options.partSize ?? DEFAULT_PART_SIZE);
    this.#streamedPutMax = Math.max(0, options.streamedPutMaxSize ?? DEFAULT_STREAMED_PUT_MAX);
    this.#where = `S3 store${options.storeName ? ` "${options.storeName}"` : ""} (bucket ${options.bucket}${
      endpoint ? ` at ${endpoint}` : ""
    })`;
  }

  /** Resolves credentials once: none found is a start-up error (one line naming where they are looked for). */
  async init(): Promise<void> {
    try {
      const provider = this.#client.config.credentials;
      await provider();
    } catch (err) {
      throw new CairnError(
        Code.FailedPrecondition,
        `${this.#where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ` +
          `AWS_PROFILE with ~/.aws/credentials, or run with an IAM role): ${firstLine(err)}`,
      );
    }
  }

  close(): Promise<void> {
    this.#client.destroy();
    return Promise.resolve();
  }

  #objectKey(key: StoreKey): string {
    // A string key may be long or hold `..` segments some S3-compatible servers mishandle: its SHA-256 instead.
    if (typeof key === "string") return `${this.#prefix}str/${sha256Hex(key)}`;
    return this.#prefix + backendKeyName(key);
  }

  async #send<T>(what: string, fn: (signal?: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return await this.#retrier.run(async () => {
      try {
        return await fn(signal);
      } catch (err) {
        if (signal?.aborted) throw new CairnError(Code.Cancelled, `${what}: cancelled`);
        throw this.#map(err, what);
      }
    }, signal);
  }

  #map(err: unknown, what: string): CairnError {
    if (err instanceof CairnError) return err;
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e?.$metadata?.httpStatusCode;
    const msg = `${what}: ${this.#where}: ${e?.name ?? "Error"}${e?.message ? `: ${e.message}` : ""}`;
    if (status === 404 || e?.name === "NotFound" || e?.name === "NoSuchKey") {
      return new CairnError(Code.NotFound, msg, { cause: err });
    }
    if (status === 403 || status === 401) return new CairnError(Code.PermissionDenied, msg, { cause: err });
    if (status === 416) return new CairnError(Code.OutOfRange, msg, { cause: err });
    if (status === 429 || status === 503) return new CairnError(Code.Unavailable, msg, { cause: err });
    if (status !== undefined && status >= 500) return new CairnError(Code.Internal, msg, { cause: err });
    if (status !== undefined && status >= 400) {
      return new CairnError(Code.InvalidArgument, msg, { cause: err });
    }
    // No HTTP status: the server could not be reached.
    return new CairnError(Code.Unavailable, `${what}: ${this.#where} is unavailable: ${firstLine(err)}`, {
      cause: err,
    });
  }

  /** The object's length, or undefined when absent (or, for a CAS key, not of the digest's size). */
  async #head(key: StoreKey, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const res = await this.#send(
        `Cannot check ${keyToString(key)}`,
        (s) =>
          this.#client.send(
            new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#objectKey(key) }),
            s ? { abortSignal: s } : {},
          ),
        signal,
      );
      const size = res.ContentLength ?? 0;
      if (isDigestKey(key) && size !== key.size) return undefined;
      return size;
    } catch (err) {
      if (err instanceof CairnError && err.code === Code.NotFound) return undefined;
      throw err;
    }
  }

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const out = new Array<number | undefined>(keys.length);
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const i = next++;
        out[i] = await this.#head(keys[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(HEAD_CONCURRENCY, keys.length) }, worker));
    return out;
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    const label = keyToString(key);
    const signal = options?.signal;
    const offset = options?.offset ?? 0;
    if (signal?.aborted) throw new CairnError(Code.Cancelled, `Cannot read ${label}: cancelled`);
    // The size is needed for range checks: a CAS key announces it; others take one HEAD.
    const size = isDigestKey(key) ? key.size : await this.#head(key, signal);
    if (size === undefined) throw notFoundError(this.kind, key);
    const range = resolveRange(key, size, options);
    if (range.end === range.start) {
      // Still check the object exists (and is whole) before answering with nothing.
      if (isDigestKey(key) && (await this.#head(key, signal)) === undefined) {
        throw notFoundError(this.kind, key);
      }
      return emptyStream();
    }
    const res = await this.#send(`Cannot read ${label}`, (s) =>
      this.#client.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: this.#objectKey(key),
          // The whole object: no Range (servers answer a plain GET faster).
          ...(range.start === 0 && range.end === size
            ? {}
            : { Range: `bytes=${range.start}-${range.end - 1}` }),
        }),
        s ? { abortSignal: s } : {},
      ), signal).catch((err) => {
        if (err instanceof CairnError && err.code === Code.OutOfRange) throw notFoundError(this.kind, key);
        throw err;
      });
    const total = totalFromContentRange(res.ContentRange) ?? (offset === 0 ? res.ContentLength : undefined);
    const wanted = range.end - range.start;
    if (total !== size || res.ContentLength !== wanted || !res.Body) {
      destroyBody(res.Body);
      throw notFoundError(this.kind, key);
    }
    // The SDK's body is a Node stream: pulled straight from its async iterator (fewer layers than toWeb).
    const it = (res.Body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    let got = 0;
    const where = this.#where;
    return new ReadableStream<Uint8Array>({
      async pull(c) {
        const { done, value } = await it.next();
        if (done) {
          if (got !== wanted) {
            throw new CairnError(
              Code.Unavailable,
              `Cannot read ${label}: ${where} sent ${got} of ${wanted} bytes`,
            );
          }
          c.close();
          return;
        }
        got += value.byteLength;
        if (got > wanted) {
          throw new CairnError(
            Code.Unavailable,
            `Cannot read ${label}: ${where} sent more than ${wanted} bytes`,
          );
        }
        c.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      },
      async cancel() {
        await it.return?.();
        destroyBody(res.Body);
      },
    }, { highWaterMark: 0 });
  }

  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    const stream = await this.read(key, options);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of stream) {
      total += chunk.byteLength;
      if (total > options.maxSize) {
        throw new CairnError(
          Code.ResourceExhausted,
          `Cannot read ${keyToString(key)} into memory: more than the limit of ${options.maxSize} bytes`,
        );
      }
      chunks.push(chunk);
    }
    if (chunks.length === 1) return chunks[0]!;
    const out = new Uint8Array(total);
    let pos = 0;
    for (const c of chunks) {
      out.set(c, pos);
      pos += c.byteLength;
    }
    return out;
  }

  write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    return asWriteError(() =>
      this.#put(key, data, expectedUploadSize(key, size), uploadLimit(size), options?.signal)
    );
  }

  /** One PutObject for a value of one part, else a multipart upload (aborted on failure). */
  async #put(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    expected: number | undefined,
    limit: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const label = keyToString(key);
    const objectKey = this.#objectKey(key);
    let uploadId: string | undefined;
    let partCount = 0;
    const parts: { PartNumber: number; ETag: string }[] = [];
    const pending: Promise<void>[] = [];
    let failed: unknown;
    const sendPart = async (bytes: Uint8Array) => {
      if (uploadId === undefined) {
        const created = await this.#send(`Cannot write ${label}`, (s) =>
          this.#client.send(
            new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: objectKey }),
            s ? { abortSignal: s } : {},
          ), signal);
        if (!created.UploadId) throw this.#map(new Error("no UploadId"), `Cannot write ${label}`);
        uploadId = created.UploadId;
      }
      const number = ++partCount;
      const id = uploadId;
      const p = this.#send(`Cannot write ${label} (part ${number})`, (s) =>
        this.#client.send(
          new UploadPartCommand({
            Bucket: this.#bucket,
            Key: objectKey,
            UploadId: id,
            PartNumber: number,
            Body: bytes,
            ContentLength: bytes.byteLength,
          }),
          s ? { abortSignal: s } : {},
        ), signal).then((r) => {
          parts.push({ PartNumber: number, ETag: r.ETag ?? "" });
          this.#stats.parts++;
        });
      p.catch((e) => (failed ??= e));
      pending.push(p);
      if (pending.length >= this.#concurrency) await pending.shift()!.catch(() => {});
    };
    // A CAS object already there whole is not uploaded again (content-addressed: same bytes). The stream is
    // still read to its end, so a caller checking it (size, hash) still sees every byte.
    const present = isDigestKey(key) && !signal?.aborted && (await this.#head(key, signal)) === key.size;
    const reading = { label, expected, limit, signal, cancelled: () => cancelledWrite(label) };
    if (present) {
      await readToEnd(data, reading);
      return;
    }
    if (expected !== undefined && expected > this.#partSize && expected <= this.#streamedPutMax) {
      return await this.#putStreamed(label, objectKey, data.getReader(), expected, signal);
    }
    try {
      const { rest } = await readInParts(data, {
        ...reading,
        check: () => {
          if (failed) throw failed;
        },
        partSize: this.#partSize,
        alloc: (bytes) => new Uint8Array(bytes),
        // A full part goes out only once more bytes follow: a value of one part is one PutObject.
        onPart: sendPart,
      });
      if (uploadId === undefined) {
        const body = rest;
        await this.#send(`Cannot write ${label}`, (s) =>
          this.#client.send(
            new PutObjectCommand({
              Bucket: this.#bucket,
              Key: objectKey,
              Body: body,
              ContentLength: body.byteLength,
            }),
            s ? { abortSignal: s } : {},
          ), signal);
        this.#stats.putObjects++;
        return;
      }
      if (rest.byteLength > 0) await sendPart(rest);
      await Promise.all(pending);
      if (failed) throw failed;
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      const id = uploadId;
      await this.#send(`Cannot write ${label}`, (s) =>
        this.#client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.#bucket,
            Key: objectKey,
            UploadId: id,
            MultipartUpload: { Parts: parts },
          }),
          s ? { abortSignal: s } : {},
        ), signal);
      this.#stats.multipartUploads++;
    } catch (err) {
      await Promise.allSettled(pending);
      if (uploadId !== undefined) {
        const id = uploadId;
        await this.#client.send(
          new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: objectKey, UploadId: id }),
        ).catch(() => {});
      }
      if (signal?.aborted) throw cancelledWrite(label);
      throw err;
    }
  }

  /**
   * One PutObject whose body is `reader`'s stream, passed through without copies and counted: more or fewer
   * bytes than `expected` errors the body, which aborts the request, so S3 creates no object.
   */
  async #putStreamed(
    label: string,
    objectKey: string,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    expected: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    let seen = 0;
    let sizeError: CairnError | undefined;
    let sourceError: unknown;
    const body = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        let r: ReadableStreamReadResult<Uint8Array>;
        try {
          r = await readOrAbort(reader, signal, () => cancelledWrite(label));
        } catch (err) {
          sourceError = err;
          throw err;
        }
        if (r.done) {
          if (seen !== expected) throw (sizeError = sizeMismatch(label, expected, seen));
          c.close();
          return;
        }
        seen += r.value.byteLength;
        if (seen > expected) throw (sizeError = sizeOver(label, expected));
        c.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
    // A failing body must abort the request (piping does not pass the error on; the server would wait).
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    // deno-lint-ignore no-explicit-any
    const nodeBody = Readable.fromWeb(body as any);
    nodeBody.on("error", (err) => abort.abort(err));
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: objectKey,
          Body: nodeBody,
          ContentLength: expected,
        }),
        { abortSignal: abort.signal },
      );
      this.#stats.putObjects++;
    } catch (err) {
      reader.cancel(err).catch(() => {});
      if (signal?.aborted) throw cancelledWrite(label);
      if (sizeError) throw sizeError;
      if (sourceError !== undefined) throw CairnError.from(sourceError);
      throw this.#map(err, `Cannot write ${label}`);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      reader.releaseLock();
    }
  }

  async delete(key: StoreKey): Promise<boolean> {
    const existed = (await this.#head(key)) !== undefined;
    await this.#send(
      `Cannot delete ${keyToString(key)}`,
      () => this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#objectKey(key) })),
    );
    return existed;
  }
}

function cancelledWrite(label: string): CairnError {
  return new CairnError(Code.Cancelled, `Write of ${label} was cancelled`);
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** `bytes a-b/total` → total. */
function totalFromContentRange(header: string | undefined): number | undefined {
  const m = header?.match(/\/(\d+)\s*$/);
  return m ? Number(m[1]) : undefined;
}

function destroyBody(body: unknown): void {
  const b = body as { destroy?: () => void; cancel?: () => void } | undefined;
  try {
    b?.destroy?.();
  } catch {
    // ignore
  }
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}
