import assert from "node:assert/strict";
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { bytesStream, collectBytes, patternBytes } from "../util/streams.ts";
import {
  freeLoopbackPort,
  S3RVER_CREDENTIALS,
  startS3rver,
  storeOnBackend,
} from "../../tests/fixtures/backends.ts";
import { assertRejectsWithCode, runAcKeyConformance, runStoreConformance } from "./conformance_suite.ts";
import { getBytes, has, putBytes } from "./helpers.ts";
import { createS3Store } from "./s3_store.ts";
import { createStoreRegistry } from "./registry.ts";
import { createExistenceCacheStore } from "./existence_cache_store.ts";

async function s3UnderTest(partSize?: number, streamedPutMaxSize?: number) {
  const server = await startS3rver({ buckets: ["cas"] });
  return await storeOnBackend(
    server,
    createS3Store({
      bucket: "cas",
      region: "us-east-1",
      keyPrefix: "cas/0/",
      endpoint: server.endpoint,
      credentials: S3RVER_CREDENTIALS,
      storeName: "S3",
      ...(partSize ? { partSize } : {}),
      ...(streamedPutMaxSize !== undefined ? { streamedPutMaxSize } : {}),
    }),
  );
}

runStoreConformance("s3", () => s3UnderTest());
runAcKeyConformance("s3", () => s3UnderTest());

function rawClient(endpoint: string): S3Client {
  return new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

Deno.test("s3: a 20 MiB blob goes up as a multipart upload and reads back by ranges", async () => {
  const { store, server, cleanup } = await s3UnderTest(undefined, 0);
  const raw = rawClient(server.endpoint);
  try {
    const bytes = await patternBytes(20 << 20, 11);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    assert.equal(await has(store, d), bytes.byteLength);
    const obj = await raw.send(new GetObjectCommand({ Bucket: "cas", Key: `cas/0/${d.hash}-${d.size}` }));
    assert.equal(obj.ContentLength, 20 << 20);
    // One multipart upload of 3 parts (8 + 8 + 4 MiB), no single PutObject.
    assert.deepEqual(store.stats, { putObjects: 0, multipartUploads: 1, parts: 3 });
    await obj.Body?.transformToByteArray();
    for (
      const [offset, length] of [[0, 10], [(8 << 20) - 5, 10], [(16 << 20) + 3, 1 << 20], [(20 << 20) - 1, 5]]
    ) {
      const got = await collectBytes(await store.read(d, { offset: offset!, length: length! }), 2 << 20);
      assert.deepEqual(got, bytes.subarray(offset!, offset! + length!));
    }
    assert.deepEqual(await collectBytes(await store.read(d), 21 << 20), bytes);
  } finally {
    raw.destroy();
    await cleanup();
  }
});

Deno.test("s3: a 20 MiB blob of announced size streams as one PutObject; a wrong length stores nothing", async () => {
  const { store, server, cleanup } = await s3UnderTest();
  const raw = rawClient(server.endpoint);
  try {
    const bytes = await patternBytes(20 << 20, 12);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    assert.deepEqual(store.stats, { putObjects: 1, multipartUploads: 0, parts: 0 });
    assert.deepEqual(await getBytes(store, d, { maxSize: 21 << 20 }), bytes);
    const obj = await raw.send(new GetObjectCommand({ Bucket: "cas", Key: `cas/0/${d.hash}-${d.size}` }));
    assert.equal(obj.ContentLength, 20 << 20);
    await obj.Body?.transformToByteArray();
    // Shorter and longer sources than announced: INVALID_ARGUMENT, and no object under the key.
    const other = await patternBytes(12 << 20, 13);
    const od = digestOf(other);
    await assertRejectsWithCode(
      store.write(od, bytesStream(other.subarray(0, 11 << 20)), { exact: od.size }),
      Code.InvalidArgument,
    );
    assert.equal(await has(store, od), undefined);
    const longer = new Uint8Array((12 << 20) + 5);
    longer.set(other);
    await assertRejectsWithCode(
      store.write(od, bytesStream(longer), { exact: od.size }),
      Code.InvalidArgument,
    );
    assert.equal(await has(store, od), undefined);
    // A source failing half way: an error of this write, nothing stored.
    let sent = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 6 << 20) {
          c.error(new Error("client went away"));
          return;
        }
        c.enqueue(other.slice(sent, sent + (1 << 20)));
        sent += 1 << 20;
      },
    });
    await assert.rejects(store.write(od, failing, { exact: od.size }), /client went away/);
    assert.equal(await has(store, od), undefined);
    await assertRejectsWithCode(store.read(od), Code.NotFound);
  } finally {
    raw.destroy();
    await cleanup();
  }
});

Deno.test("s3: a truncated object is NOT_FOUND, never served", async () => {
  const { store, server, cleanup } = await s3UnderTest();
  const raw = rawClient(server.endpoint);
  try {
    const bytes = await patternBytes(100_000, 4);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    // Something (a bad copy, a broken tool) leaves a shorter object under the digest's key.
    await raw.send(
      new PutObjectCommand({
        Bucket: "cas",
        Key: `cas/0/${d.hash}-${d.size}`,
        Body: bytes.subarray(0, 60_000),
      }),
    );
    assert.equal(await has(store, d), undefined);
    await assertRejectsWithCode(store.read(d), Code.NotFound);
    await assertRejectsWithCode(store.read(d, { offset: 10, length: 10 }), Code.NotFound);
    await assertRejectsWithCode(getBytes(store, d, { maxSize: 1 << 20 }), Code.NotFound);
  } finally {
    raw.destroy();
    await cleanup();
  }
});

Deno.test("s3: an aborted multipart upload leaves no object", async () => {
  const { store, cleanup } = await s3UnderTest(5 << 20, 0);
  try {
    const bytes = await patternBytes(12 << 20, 8);
    const d = digestOf(bytes);
    let sent = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 11 << 20) {
          c.error(new Error("client went away"));
          return;
        }
        c.enqueue(bytes.slice(sent, sent + (1 << 20)));
        sent += 1 << 20;
      },
    });
    await assert.rejects(store.write(d, failing, { exact: d.size }));
    assert.equal(await has(store, d), undefined);
    await assertRejectsWithCode(store.read(d), Code.NotFound);
  } finally {
    await cleanup();
  }
});

Deno.test("s3: existence_cache in front answers repeated hasMany without the backend", async () => {
  const { store, server, cleanup } = await s3UnderTest();
  try {
    const cached = createExistenceCacheStore(store, {
      maxCount: 1000,
      maxSeconds: 1800,
      maxBytes: 0,
      evictBytes: 0,
    });
    const bytes = new TextEncoder().encode("cached blob");
    const d = digestOf(bytes);
    await putBytes(cached, d, bytes);
    assert.equal(await has(cached, d), bytes.byteLength);
    await server.stop(); // the backend is gone: the cache still answers
    assert.equal(await has(cached, d), bytes.byteLength);
  } finally {
    await cleanup().catch(() => {});
  }
});

Deno.test("s3: server down at start → UNAVAILABLE naming the store, then recovers", async () => {
  const port = freeLoopbackPort();
  const store = createS3Store({
    bucket: "cas",
    endpoint: `http://127.0.0.1:${port}`,
    credentials: S3RVER_CREDENTIALS,
    storeName: "CAS_S3",
  });
  await store.init();
  const bytes = new TextEncoder().encode("hello s3");
  const d = digestOf(bytes);
  let server: Awaited<ReturnType<typeof startS3rver>> | undefined;
  try {
    const err = await assertRejectsWithCode(putBytes(store, d, bytes), Code.Unavailable);
    assert.match(err.message, /CAS_S3/);
    await assertRejectsWithCode(store.hasMany([d]), Code.Unavailable);
    server = await startS3rver({ buckets: ["cas"], port });
    await putBytes(store, d, bytes);
    assert.equal(await has(store, d), bytes.byteLength);
    assert.deepEqual(await getBytes(store, d, { maxSize: 100 }), bytes);
  } finally {
    await store.close();
    await server?.stop();
  }
});

Deno.test("s3: config fields, endpoint from AWS_ENDPOINT_URL_S3, providers Cairn lacks are refused", async () => {
  const server = await startS3rver({ buckets: ["b"] });
  const saved = ["AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].map((k) =>
    [k, Deno.env.get(k)] as const
  );
  Deno.env.set("AWS_ENDPOINT_URL_S3", server.endpoint);
  Deno.env.set("AWS_ACCESS_KEY_ID", S3RVER_CREDENTIALS.accessKeyId);
  Deno.env.set("AWS_SECRET_ACCESS_KEY", S3RVER_CREDENTIALS.secretAccessKey);
  try {
    const registry = createStoreRegistry();
    const store = registry.build("S3", {
      experimental_s3_store: {
        region: "us-east-1",
        bucket: "b",
        key_prefix: "cas/7/",
        retry: { max_retries: 10, delay: 0.3, jitter: 0.5 },
        multipart_max_concurrent_uploads: 2,
      },
    });
    await store.init?.({ get: () => store });
    const bytes = await patternBytes(1000, 2);
    await putBytes(store, digestOf(bytes), bytes);
    assert.equal(await has(store, digestOf(bytes)), 1000);
    await store.close?.();
    assert.throws(
      () => registry.build("G", { experimental_cloud_object_store: { provider: "gcs", bucket: "b" } }),
      /provider "gcs" is not supported by Cairn yet/,
    );
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await server.stop();
  }
});

Deno.test("s3: no credentials anywhere → one clear error at start", async () => {
  const home = await Deno.makeTempDir();
  const keys = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
  ];
  const saved = keys.map((k) => [k, Deno.env.get(k)] as const);
  for (const k of keys) Deno.env.delete(k);
  Deno.env.set("AWS_SHARED_CREDENTIALS_FILE", `${home}/none`);
  Deno.env.set("AWS_CONFIG_FILE", `${home}/none`);
  Deno.env.set("AWS_EC2_METADATA_DISABLED", "true");
  try {
    const store = createS3Store({ bucket: "b", endpoint: "http://127.0.0.1:9", storeName: "S3" });
    const err = await assertRejectsWithCode(store.init(), Code.FailedPrecondition);
    assert.match(err.message, /S3 store "S3".*no AWS credentials found/);
    assert.equal(err.message.split("\n").length, 1);
    await store.close();
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await Deno.remove(home, { recursive: true });
  }
});
