import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import { digestOf } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { bytesStream, collectBytes, patternBytes } from "../util/streams.ts";
import { startRedis, storeOnBackend } from "../../tests/fixtures/backends.ts";
import { assertRejectsWithCode, runAcKeyConformance, runStoreConformance } from "./conformance_suite.ts";
import { getBytes, has, putBytes } from "./helpers.ts";
import { createRedisStore, type RedisStore } from "./redis_store.ts";
import { createStoreRegistry } from "./registry.ts";

async function redisUnderTest(extraArgs: string[] = [], chunk?: number) {
  const server = await startRedis({ extraArgs });
  return await storeOnBackend(
    server,
    createRedisStore({
      addresses: [server.url],
      keyPrefix: "t/",
      ...(chunk ? { readChunkSize: chunk, storedChunkSize: chunk } : {}),
      storeName: "REDIS",
    }),
  );
}

runStoreConformance("redis_store", () => redisUnderTest());
runAcKeyConformance("redis_store", () => redisUnderTest());

/** A raw client on the same server, for inspecting and damaging keys. */
async function raw(url: string): Promise<Redis> {
  const r = new Redis(url, { lazyConnect: true });
  await r.connect();
  return r;
}

Deno.test("redis_store: a value over several chunks round-trips, ranged reads touch only needed chunks", async () => {
  const { store, server, cleanup } = await redisUnderTest([], 1024);
  const r = await raw(server.url);
  try {
    const bytes = await patternBytes(10_000, 7);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    const chunkKeys = await r.keys("t/chunk/*");
    assert.equal(chunkKeys.length, 10, "10 chunks of 1 KiB");
    assert.deepEqual(await r.keys("t/tmp/*"), [], "no temporary chunks left");
    assert.deepEqual(await getBytes(store, d, { maxSize: 1 << 20 }), bytes);
    const mid = await collectBytes(await store.read(d, { offset: 1500, length: 3000 }), 1 << 20);
    assert.deepEqual(mid, bytes.subarray(1500, 4500));
    const tail = await collectBytes(await store.read(d, { offset: 9999 }), 1 << 20);
    assert.deepEqual(tail, bytes.subarray(9999));
  } finally {
    r.disconnect();
    await cleanup();
  }
});

Deno.test("redis_store: a missing chunk makes the value NOT_FOUND, and the manifest goes", async () => {
  const { store, server, cleanup } = await redisUnderTest([], 1024);
  const r = await raw(server.url);
  try {
    const bytes = await patternBytes(5000, 3);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    const chunkKeys = (await r.keys("t/chunk/*")).sort();
    await r.del(chunkKeys[2]!);
    assert.equal(await has(store, d), undefined);
    await assertRejectsWithCode(store.read(d), Code.NotFound);
    assert.equal(await r.exists(`t/${d.hash}-${d.size}`), 0, "manifest deleted");
    assert.deepEqual(await r.keys("t/chunk/*"), [], "its other chunks deleted too");
  } finally {
    r.disconnect();
    await cleanup();
  }
});

Deno.test("redis_store: a chunk shortened under a reader errors the stream instead of serving short data", async () => {
  const { store, server, cleanup } = await redisUnderTest([], 1024);
  const r = await raw(server.url);
  try {
    const bytes = await patternBytes(8000, 5);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    const stream = await store.read(d);
    const chunkKeys = (await r.keys("t/chunk/*")).sort((a, b) =>
      Number(a.split("/").pop()) - Number(b.split("/").pop())
    );
    await r.del(chunkKeys[7]!);
    await assertRejectsWithCode(collectBytes(stream, 1 << 20), Code.NotFound);
  } finally {
    r.disconnect();
    await cleanup();
  }
});

Deno.test("redis_store: an aborted upload leaves nothing visible and no chunk behind", async () => {
  const { store, server, cleanup } = await redisUnderTest([], 1024);
  const r = await raw(server.url);
  try {
    const bytes = await patternBytes(20_000, 9);
    const d = digestOf(bytes);
    let sent = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 12_000) {
          c.error(new Error("client went away"));
          return;
        }
        c.enqueue(bytes.slice(sent, sent + 3000));
        sent += 3000;
      },
    });
    await assert.rejects(store.write(d, failing, { exact: d.size }));
    assert.equal(await has(store, d), undefined);
    assert.deepEqual(await r.keys("t/*"), [], "no manifest, no chunk, no temporary chunk");
    // Aborted through the signal.
    const ac = new AbortController();
    let n = 0;
    const slow = new ReadableStream<Uint8Array>({
      pull(c) {
        if (n++ === 3) ac.abort(new Error("stop"));
        c.enqueue(bytes.slice(0, 2000));
      },
    });
    await assertRejectsWithCode(
      store.write(d, slow, { exact: d.size }, { signal: ac.signal }),
      Code.Cancelled,
    );
    assert.equal(await has(store, d), undefined);
    assert.deepEqual(await r.keys("t/*"), []);
  } finally {
    r.disconnect();
    await cleanup();
  }
});

Deno.test("redis_store: a crash mid-write (temporary chunks only) exposes nothing", async () => {
  const { store, server, cleanup } = await redisUnderTest([], 1024);
  const r = await raw(server.url);
  try {
    // What a writer that died before publishing leaves: temporary chunks with a TTL, no manifest.
    const bytes = await patternBytes(4096, 2);
    const d = digestOf(bytes);
    await r.set("t/tmp/dead/0", Buffer.from(bytes.subarray(0, 1024)), "PX", 3_600_000);
    assert.equal(await has(store, d), undefined);
    await assertRejectsWithCode(store.read(d), Code.NotFound);
    assert.ok((await r.pttl("t/tmp/dead/0")) > 0, "temporary chunks expire by themselves");
  } finally {
    r.disconnect();
    await cleanup();
  }
});

Deno.test("redis_store: under maxmemory 2mb + allkeys-lru, eviction never serves a partial value", async () => {
  const { store, cleanup } = await redisUnderTest(
    ["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"],
    16 * 1024,
  );
  try {
    const blobs: { d: ReturnType<typeof digestOf>; bytes: Uint8Array }[] = [];
    for (let i = 0; i < 24; i++) {
      const bytes = await patternBytes(200_000, 100 + i);
      const d = digestOf(bytes);
      blobs.push({ d, bytes });
      try {
        await putBytes(store, d, bytes);
      } catch {
        // A write may lose its temporary chunks to eviction: refused, never half-stored.
      }
    }
    let present = 0;
    let absent = 0;
    for (const { d, bytes } of blobs) {
      try {
        const got = await getBytes(store, d, { maxSize: 1 << 20 });
        assert.deepEqual(got, bytes, "a value read back is whole");
        present++;
      } catch (err) {
        assert.equal((err as { code?: Code }).code, Code.NotFound);
        absent++;
      }
    }
    assert.ok(absent > 0, "eviction happened (4.8 MB into 2 MB)");
    // Redis's LRU is sampled, so under this pressure any value (even the newest) may lose a chunk; the store
    // still works: a fresh value written now reads back whole within a few attempts.
    let stored = present > 0;
    for (let attempt = 0; !stored && attempt < 8; attempt++) {
      const bytes = await patternBytes(100_000, 200 + attempt);
      const d = digestOf(bytes);
      try {
        await putBytes(store, d, bytes);
      } catch {
        continue; // refused (its temporary chunks were evicted), never half-stored
      }
      try {
        assert.deepEqual(await getBytes(store, d, { maxSize: 1 << 20 }), bytes, "a value read back is whole");
        stored = true;
      } catch (err) {
        assert.ok(err instanceof CairnError, String(err));
        assert.equal(err.code, Code.NotFound, err.message);
      }
    }
    assert.ok(stored, "a value written under memory pressure is readable");
  } finally {
    await cleanup();
  }
});

Deno.test("redis_store: Redis down at start → UNAVAILABLE naming the store, then recovers by itself", async () => {
  const { freeLoopbackPort } = await import("../../tests/fixtures/backends.ts");
  const port = freeLoopbackPort();
  const store: RedisStore = createRedisStore({
    addresses: [`redis://127.0.0.1:${port}`],
    storeName: "AC_SLOW",
    connectionPoolSize: 2,
  });
  await store.init();
  const bytes = new TextEncoder().encode("hello redis");
  const d = digestOf(bytes);
  let server: Awaited<ReturnType<typeof startRedis>> | undefined;
  try {
    const err = await assertRejectsWithCode(putBytes(store, d, bytes), Code.Unavailable);
    assert.match(err.message, /AC_SLOW/);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    await assertRejectsWithCode(store.hasMany([d]), Code.Unavailable);
    server = await startRedis({ port });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await putBytes(store, d, bytes);
        break;
      } catch (err) {
        if ((err as { code?: Code }).code !== Code.Unavailable || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // Every connection of the pool comes back.
    for (let i = 0; i < 4; i++) {
      for (;;) {
        try {
          assert.equal(await has(store, d), bytes.byteLength);
          break;
        } catch (err) {
          if ((err as { code?: Code }).code !== Code.Unavailable || Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    assert.deepEqual(await getBytes(store, d, { maxSize: 100 }), bytes);
  } finally {
    await store.close();
    await server?.stop();
  }
});

Deno.test("redis_store: built from config fields; an unknown mode is refused", async () => {
  const server = await startRedis();
  try {
    const registry = createStoreRegistry();
    const store = registry.build("R", {
      redis_store: {
        addresses: [server.url + "/3"],
        key_prefix: "p/",
        read_chunk_size: 4096,
        max_chunk_uploads_per_update: 2,
        connection_pool_size: 1,
        command_timeout_ms: 5000,
        retry: { max_retries: 2, delay: 0.01, jitter: 0.5 },
      },
    });
    await store.init?.({ get: () => store });
    const bytes = await patternBytes(20_000, 1);
    await putBytes(store, digestOf(bytes), bytes);
    const r = await raw(server.url + "/3");
    assert.deepEqual(await r.keys("p/*"), [`p/${digestOf(bytes).hash}-20000`], "one inline value in db 3");
    r.disconnect();
    await store.write("s", bytesStream(new Uint8Array(3)), { exact: 3 });
    await store.close?.();
    assert.throws(
      () => registry.build("R", { redis_store: { addresses: [server.url], mode: "sharded" } }),
      /mode "sharded" is not one of "standard", "cluster", "sentinel"/,
    );
  } finally {
    await server.stop();
  }
});

Deno.test("redis_store: a command outliving command_timeout_ms is UNAVAILABLE saying so; later ones work", async () => {
  const server = await startRedis();
  const store = createRedisStore({ addresses: [server.url], keyPrefix: "t/", commandTimeoutMs: 300 });
  const r = await raw(server.url);
  try {
    await store.init();
    const bytes = new TextEncoder().encode("slow");
    await putBytes(store, digestOf(bytes), bytes);
    await r.call("CLIENT", "PAUSE", "3000", "ALL"); // every other client's commands wait 3 s
    const t0 = performance.now();
    const err = await assertRejectsWithCode(
      getBytes(store, digestOf(bytes), { maxSize: 100 }),
      Code.Unavailable,
    );
    assert.match(err.message, /timed out after 300 ms/);
    assert.ok(performance.now() - t0 < 2500, "rejected by the deadline, not by the end of the pause");
    await r.call("CLIENT", "UNPAUSE");
    assert.deepEqual(await getBytes(store, digestOf(bytes), { maxSize: 100 }), bytes);
  } finally {
    r.disconnect();
    await store.close();
    await server.stop();
  }
});

Deno.test("redis_store: a key rewritten between inline (a string) and chunked (a manifest hash) leaves no stale chunk", async () => {
  const { store, server, cleanup } = await redisUnderTest([], 1024);
  const r = await raw(server.url);
  try {
    const big = await patternBytes(5000, 21);
    const small = new TextEncoder().encode("ten bytes!");
    await store.write("k", bytesStream(big), { exact: big.byteLength });
    assert.equal(await r.type("t/str/k"), "hash");
    assert.equal((await r.keys("t/chunk/*")).length, 5);
    await store.write("k", bytesStream(small), { exact: small.byteLength });
    assert.equal(await r.type("t/str/k"), "string", "an inline value is a plain string, read by one GET");
    assert.deepEqual(await r.keys("t/chunk/*"), [], "the chunks of the value replaced are gone");
    assert.deepEqual(await getBytes(store, "k", { maxSize: 100 }), small);
    assert.equal(await has(store, "k"), small.byteLength);
    await store.write("k", bytesStream(big), { exact: big.byteLength });
    assert.deepEqual(await getBytes(store, "k", { maxSize: 1 << 20 }), big);
    assert.equal(await has(store, "k"), big.byteLength);
    assert.equal(await store.delete("k"), true);
    assert.deepEqual(await r.keys("t/*"), []);
  } finally {
    r.disconnect();
    await cleanup();
  }
});
