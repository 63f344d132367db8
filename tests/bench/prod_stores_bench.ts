/**
 * Production stores benchmark: `redis_store` and the S3 store (`experimental_cloud_object_store`, aws)
 * against a local redis-server and s3rver, beside the raw client doing the same work in the same run
 * (ioredis SET/GET of the whole value; aws-sdk PutObject/GetObject of the same object). Prints put/get MB/s
 * of one large blob and the median latency of small-blob gets, and each figure as a share of the raw
 * client's (target ≥ 80%).
 *
 * Usage: `deno run -A tests/bench/prod_stores_bench.ts [--size-mib=64] [--small=300] [--rounds=3]`
 * (each figure is the best of `rounds`, store and raw client interleaved).
 * @module
 */
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { digestOf } from "../../src/digest/digest.ts";
import { getBytes, putBytes } from "../../src/store/helpers.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import { createS3Store } from "../../src/store/s3_store.ts";
import type { StoreDriver } from "../../src/store/types.ts";
import { bytesStream, patternBytes } from "../../src/util/streams.ts";
import { S3RVER_CREDENTIALS, startRedis, startS3rver } from "../fixtures/backends.ts";

const arg = (name: string, fallback: number) => {
  const a = Deno.args.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split("=")[1]) : fallback;
};
const SIZE = arg("size-mib", 64) * 1024 * 1024;
const SMALL_GETS = arg("small", 300);
const ROUNDS = arg("rounds", 3);

const large = await patternBytes(SIZE, 77);
const largeDigest = digestOf(large);
const small = await patternBytes(200, 78);
const smallDigest = digestOf(small);

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function medianLatencyUs(fn: () => Promise<unknown>, n: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    samples.push((performance.now() - t0) * 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(n / 2)]!;
}

const mbps = (s: number) => SIZE / (1024 * 1024) / s;
const pct = (store: number, raw: number) => `${Math.round((store / raw) * 100)}%`;

function row(what: string, store: string, raw: string, share: string) {
  console.log(`${what.padEnd(34)} ${store.padStart(12)} ${raw.padStart(12)} ${share.padStart(7)}`);
}

async function measure(
  name: string,
  store: StoreDriver,
  raw: { put(b: Uint8Array, key: string): Promise<void>; get(key: string): Promise<Uint8Array> },
) {
  // Warm-up.
  await putBytes(store, smallDigest, small);
  await raw.put(small, "raw-small");
  // Best of ROUNDS for each figure (the machine may be shared); store and raw interleaved.
  let putStore = Infinity, putRaw = Infinity, getStore = Infinity, getRaw = Infinity;
  let latStore = Infinity, latRaw = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    await store.delete?.(largeDigest);
    putStore = Math.min(
      putStore,
      await time(() => store.write(largeDigest, bytesStream(large), { exact: SIZE })),
    );
    putRaw = Math.min(putRaw, await time(() => raw.put(large, "raw-large")));
    let got: Uint8Array = new Uint8Array();
    getStore = Math.min(
      getStore,
      await time(async () => (got = await getBytes(store, largeDigest, { maxSize: SIZE }))),
    );
    if (Buffer.compare(got, large) !== 0) throw new Error(`${name}: read back wrong bytes`);
    getRaw = Math.min(getRaw, await time(async () => (got = await raw.get("raw-large"))));
    if (got.byteLength !== SIZE) throw new Error(`${name}: raw read back ${got.byteLength} bytes`);
    latStore = Math.min(
      latStore,
      await medianLatencyUs(() => getBytes(store, smallDigest, { maxSize: 1024 }), SMALL_GETS),
    );
    latRaw = Math.min(latRaw, await medianLatencyUs(() => raw.get("raw-small"), SMALL_GETS));
  }
  console.log(`\n${name} (${SIZE >> 20} MiB blob, ${SMALL_GETS} small gets)`);
  row("", "store", "raw client", "share");
  row("put MB/s", mbps(putStore).toFixed(0), mbps(putRaw).toFixed(0), pct(mbps(putStore), mbps(putRaw)));
  row("get MB/s", mbps(getStore).toFixed(0), mbps(getRaw).toFixed(0), pct(mbps(getStore), mbps(getRaw)));
  row("small get median µs", latStore.toFixed(0), latRaw.toFixed(0), pct(latRaw, latStore));
}

const redis = await startRedis({ extraArgs: ["--proto-max-bulk-len", "1gb"] });
const s3 = await startS3rver({ buckets: ["bench"] });
try {
  {
    const store = createRedisStore({ addresses: [redis.url], keyPrefix: "b/", storeName: "bench" });
    await store.init();
    const client = new Redis(redis.url, { lazyConnect: true });
    await client.connect();
    await measure("redis_store", store, {
      put: async (b, k) => void (await client.set(k, Buffer.from(b.buffer, b.byteOffset, b.byteLength))),
      get: async (k) => new Uint8Array(await client.getBuffer(k) ?? new Uint8Array()),
    });
    client.disconnect();
    await store.close();
  }
  {
    const store = createS3Store({
      bucket: "bench",
      endpoint: s3.endpoint,
      credentials: S3RVER_CREDENTIALS,
      keyPrefix: "cas/",
      storeName: "bench",
    });
    await store.init();
    const client = new S3Client({
      region: "us-east-1",
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    await measure("experimental_cloud_object_store (s3rver)", store, {
      put: async (b, k) =>
        void (await client.send(new PutObjectCommand({ Bucket: "bench", Key: k, Body: b }))),
      get: async (k) =>
        await (await client.send(new GetObjectCommand({ Bucket: "bench", Key: k }))).Body!
          .transformToByteArray(),
    });
    client.destroy();
    await store.close();
  }
} finally {
  await s3.stop();
  await redis.stop();
}
