// config/seed_001_redis_s3.json5 (NativeLink's production CAS chain on Redis and S3, as written) run by the
// real main.ts against a local redis-server and s3rver: blobs of every tier and an action result
// round-trip over gRPC, land where the chain says (Redis under 1.5 MB, S3 above), and are still served
// after a restart that drops the memory tiers.
import assert from "node:assert/strict";
import { ConnectError, createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import {
  ActionCache,
  ContentAddressableStorage,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { digestOf } from "../src/digest/digest.ts";
import { formatReadResourceName, formatWriteResourceName } from "../src/digest/resource_name.ts";
import { toProto } from "../src/service/cas_service.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import { concatBytes, patternBytes } from "../src/util/streams.ts";
import { startCairnProcess } from "./fixtures/cairn_process.ts";
import { S3RVER_CREDENTIALS, startRedis, startS3rver } from "./fixtures/backends.ts";

const CONFIG = await Deno.readTextFile(new URL("../config/seed_001_redis_s3.json5", import.meta.url));

Deno.test("config/seed_001_redis_s3.json5: blobs and action results round-trip through real Redis and S3", async () => {
  const redis = await startRedis();
  const s3 = await startS3rver({ buckets: ["cas-bucket"] });
  const env = {
    REDIS_STORE_URL: redis.url,
    SHARED_REDIS_URL: `${redis.url}/1`,
    BEP_REDIS_STORE_URL: `${redis.url}/2`,
    SHARED_cas_BUCKET: "cas-bucket",
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    CAIRN_LISTEN: "127.0.0.1:0",
    CAIRN_METRICS_LISTEN: "127.0.0.1:0",
  };
  const dir = await Deno.makeTempDir({ prefix: "cairn_prod_e2e_" });
  const raw = new Redis(`${redis.url}/1`, { lazyConnect: true });
  const rawS3 = new S3Client({
    region: "us-east-1",
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
  const small = new TextEncoder().encode("a small blob for every tier");
  const medium = await patternBytes(200_000, 31); // over 64 KB: Redis only, not memory
  const large = await patternBytes(3 * 1024 * 1024 + 5, 32); // over 1.5 MB: S3
  const action = toProto(digestOf(new TextEncoder().encode("the action")));
  const actionResult = {
    exitCode: 0,
    outputFiles: [{ path: "out/medium.bin", digest: toProto(digestOf(medium)) }],
  };
  try {
    // First run: upload.
    {
      const cairn = await startCairnProcess({ config: CONFIG, env, dir });
      try {
        const transport = createGrpcClientTransport(cairn.url);
        const cas = createClient(ContentAddressableStorage, transport);
        const bs = createClient(ByteStream, transport);
        const ac = createClient(ActionCache, transport);
        const up = await cas.batchUpdateBlobs({
          instanceName: "main",
          requests: [small, medium].map((b) => ({ digest: toProto(digestOf(b)), data: b })),
        });
        assert.deepEqual(up.responses.map((r) => r.status?.code ?? 0), [0, 0]);
        const d = digestOf(large);
        const name = formatWriteResourceName({
          instanceName: "main",
          uuid: "e2e-1",
          compressor: "identity",
          digest: d,
        });
        const res = await bs.write((async function* () {
          for (let pos = 0; pos < large.byteLength; pos += 256 * 1024) {
            const data = large.subarray(pos, pos + 256 * 1024);
            yield {
              resourceName: pos === 0 ? name : "",
              writeOffset: BigInt(pos),
              data,
              finishWrite: pos + data.byteLength >= large.byteLength,
            };
          }
        })());
        assert.equal(res.committedSize, BigInt(large.byteLength));
        await ac.updateActionResult({ instanceName: "main", actionDigest: action, actionResult });
      } finally {
        await cairn.stop();
      }
    }
    // Where the chain put them.
    await raw.connect();
    const md = digestOf(medium);
    assert.equal(await raw.exists(`${md.hash}-${md.size}`), 1, "medium blob's manifest in Redis db 1");
    const ld = digestOf(large);
    assert.equal(await raw.exists(`${ld.hash}-${ld.size}`), 0, "large blob not in Redis");
    const head = await rawS3.send(
      new HeadObjectCommand({ Bucket: "cas-bucket", Key: `cas/0/${ld.hash}-${ld.size}` }),
    );
    assert.equal(head.ContentLength, large.byteLength, "large blob in S3 under cas/0/");
    const acRedis = new Redis(redis.url, { lazyConnect: true });
    await acRedis.connect();
    assert.equal(
      await acRedis.exists(`ac/${action.hash}-${action.sizeBytes}`),
      1,
      "action result in the AC Redis (db 0)",
    );
    acRedis.disconnect();

    // Second run: memory tiers are empty; everything comes from Redis and S3.
    const cairn = await startCairnProcess({ config: CONFIG, env, dir });
    try {
      const transport = createGrpcClientTransport(cairn.url);
      const cas = createClient(ContentAddressableStorage, transport);
      const bs = createClient(ByteStream, transport);
      const ac = createClient(ActionCache, transport);
      const missing = await cas.findMissingBlobs({
        instanceName: "main",
        blobDigests: [small, medium, large].map((b) => toProto(digestOf(b))),
      });
      assert.deepEqual(missing.missingBlobDigests, []);
      const got = await cas.batchReadBlobs({
        instanceName: "main",
        digests: [small, medium].map((b) => toProto(digestOf(b))),
      });
      assert.deepEqual(got.responses.map((r) => new Uint8Array(r.data)), [small, medium]);
      const chunks: Uint8Array[] = [];
      for await (
        const r of bs.read({
          resourceName: formatReadResourceName({ instanceName: "main", compressor: "identity", digest: ld }),
        })
      ) chunks.push(new Uint8Array(r.data));
      assert.deepEqual(concatBytes(chunks), large);
      const ranged: Uint8Array[] = [];
      for await (
        const r of bs.read({
          resourceName: formatReadResourceName({ instanceName: "main", compressor: "identity", digest: ld }),
          readOffset: 2_000_000n,
          readLimit: 1000n,
        })
      ) ranged.push(new Uint8Array(r.data));
      assert.deepEqual(concatBytes(ranged), large.subarray(2_000_000, 2_001_000));
      const result = await ac.getActionResult({ instanceName: "main", actionDigest: action });
      assert.equal(result.outputFiles[0]?.path, "out/medium.bin");
      // The medium blob lost from Redis (evicted): a read is NOT_FOUND (which also drops it from the
      // existence cache), and then the action result referencing it is no longer complete: a miss.
      await raw.del(`${md.hash}-${md.size}`);
      const lost = await cas.batchReadBlobs({ instanceName: "main", digests: [toProto(md)] });
      assert.equal(lost.responses[0]?.status?.code, 5);
      await assert.rejects(
        ac.getActionResult({ instanceName: "main", actionDigest: action }),
        (err: unknown) => {
          assert.ok(err instanceof ConnectError);
          assert.equal(err.code, 5, `NOT_FOUND, got ${err.code}: ${err.rawMessage}`);
          return true;
        },
      );
    } finally {
      await cairn.stop();
    }
  } finally {
    raw.disconnect();
    rawS3.destroy();
    await s3.stop();
    await redis.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("config/seed_001_redis_s3.json5: starts with Redis and S3 down, answers UNAVAILABLE naming the store, recovers", async () => {
  const { freeLoopbackPort } = await import("./fixtures/backends.ts");
  const redisPort = freeLoopbackPort();
  const s3Port = freeLoopbackPort();
  const env = {
    REDIS_STORE_URL: `redis://127.0.0.1:${redisPort}`,
    SHARED_REDIS_URL: `redis://127.0.0.1:${redisPort}/1`,
    BEP_REDIS_STORE_URL: `redis://127.0.0.1:${redisPort}/2`,
    SHARED_cas_BUCKET: "cas-bucket",
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${s3Port}`,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    CAIRN_LISTEN: "127.0.0.1:0",
    CAIRN_METRICS_LISTEN: "127.0.0.1:0",
  };
  const cairn = await startCairnProcess({ config: CONFIG, env });
  let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
  let s3: Awaited<ReturnType<typeof startS3rver>> | undefined;
  try {
    const cas = createClient(ContentAddressableStorage, createGrpcClientTransport(cairn.url));
    const blob = await patternBytes(100_000, 5); // Redis tier
    const d = toProto(digestOf(blob));
    await assert.rejects(cas.findMissingBlobs({ instanceName: "main", blobDigests: [d] }), (err: unknown) => {
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, 14, `UNAVAILABLE, got ${err.code}: ${err.rawMessage}`);
      assert.match(err.rawMessage, /redis_store of store "cas_FAST_SLOW_STORE"/);
      return true;
    });
    redis = await startRedis({ port: redisPort });
    s3 = await startS3rver({ buckets: ["cas-bucket"], port: s3Port });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const up = await cas.batchUpdateBlobs({
          instanceName: "main",
          requests: [{ digest: d, data: blob }],
        });
        if ((up.responses[0]?.status?.code ?? 0) === 0) break;
        if (Date.now() > deadline) assert.fail(`still failing: ${up.responses[0]?.status?.message}`);
      } catch (err) {
        if (!(err instanceof ConnectError && err.code === 14) || Date.now() > deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const missing = await cas.findMissingBlobs({ instanceName: "main", blobDigests: [d] });
    assert.deepEqual(missing.missingBlobDigests, []);
  } finally {
    await cairn.stop();
    await s3?.stop();
    await redis?.stop();
  }
});
