/**
 * `redis_store` in `mode: "cluster"` against a real 3-master Redis Cluster on loopback, and in
 * `mode: "sentinel"` against a master watched by a real Redis Sentinel: the shared store conformance suite,
 * plus checks that all keys of one chunked value share one hash slot while values spread over the masters.
 *
 * @example
 * ```sh
 * deno test --allow-all src/store/redis_cluster_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { Cluster, Redis } from "ioredis";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { patternBytes } from "../util/streams.ts";
import { startRedisCluster, startRedisSentinel } from "../../tests/fixtures/backends.ts";
import { assertRejectsWithCode, runAcKeyConformance, runStoreConformance } from "./conformance_suite.ts";
import { getBytes, has, putBytes } from "./helpers.ts";
import { createRedisStore, parseRedisAddresses } from "./redis_store.ts";
import { createStoreRegistry } from "./registry.ts";

async function clusterUnderTest(chunk?: number) {
  const cluster = await startRedisCluster();
  const store = createRedisStore({
    addresses: [cluster.urls[0]!],
    mode: "cluster",
    keyPrefix: "t/",
    ...(chunk ? { readChunkSize: chunk, storedChunkSize: chunk } : {}),
    storeName: "REDIS_CLUSTER",
  });
  await store.init();
  return {
    store,
    cluster,
    cleanup: async () => {
      await store.close();
      await cluster.stop();
    },
  };
}

async function sentinelUnderTest() {
  const sentinel = await startRedisSentinel();
  const store = createRedisStore({
    addresses: [sentinel.url],
    mode: "sentinel",
    keyPrefix: "t/",
    storeName: "REDIS_SENTINEL",
  });
  await store.init();
  return {
    store,
    cleanup: async () => {
      await store.close();
      await sentinel.stop();
    },
  };
}

runStoreConformance("redis_store (cluster)", () => clusterUnderTest());
runAcKeyConformance("redis_store (cluster)", () => clusterUnderTest());
runStoreConformance("redis_store (sentinel)", () => sentinelUnderTest());

Deno.test("redis_store (cluster): a chunked value's keys share one slot; values spread over the masters", async () => {
  const { store, cluster, cleanup } = await clusterUnderTest(1024);
  const raw = new Cluster([{ host: "127.0.0.1", port: cluster.nodes[0]!.port }], { lazyConnect: true });
  try {
    await raw.connect();
    const values = await Promise.all(Array.from({ length: 12 }, (_, i) => patternBytes(5000 + i, 40 + i)));
    for (const v of values) await putBytes(store, digestOf(v), v);
    const slotsOfNode = new Map<number, Set<number>>();
    const slotOfManifest = new Map<string, number>();
    for (const node of cluster.nodes) {
      const r = new Redis(node.port, "127.0.0.1", { lazyConnect: true });
      await r.connect();
      try {
        const keys = await r.keys("t/*");
        assert.deepEqual(keys.filter((k) => k.startsWith("t/tmp/")), [], "no temporary chunk left");
        const slots = new Set<number>();
        for (const k of keys) slots.add(Number(await r.call("CLUSTER", "KEYSLOT", k)));
        slotsOfNode.set(node.port, slots);
        for (const k of keys) {
          if (!k.startsWith("t/chunk/")) slotOfManifest.set(k, Number(await r.call("CLUSTER", "KEYSLOT", k)));
        }
        // Every chunk key sits on the node of its manifest, in the manifest's slot.
        for (const k of keys.filter((k) => k.startsWith("t/chunk/"))) {
          const tag = /\{([^}]*)\}/.exec(k)![1]!;
          assert.ok(keys.includes(`t/{${tag}}`), `chunk ${k} is on the node of its manifest`);
          assert.equal(
            Number(await r.call("CLUSTER", "KEYSLOT", k)),
            Number(await r.call("CLUSTER", "KEYSLOT", `t/{${tag}}`)),
          );
        }
      } finally {
        r.disconnect();
      }
    }
    assert.equal(slotOfManifest.size, values.length, "one manifest per value");
    const used = [...slotsOfNode.values()].filter((s) => s.size > 0).length;
    assert.ok(used >= 2, `12 values spread over at least 2 of the 3 masters (used ${used})`);
    for (const v of values) {
      assert.equal(await has(store, digestOf(v)), v.byteLength);
      assert.deepEqual(await getBytes(store, digestOf(v), { maxSize: 1 << 20 }), v);
    }
    // A missing chunk (deleted through a cluster-aware client) makes the value NOT_FOUND.
    const victim = digestOf(values[0]!);
    const chunkKeys: string[] = [];
    for (const node of raw.nodes("master")) {
      chunkKeys.push(...await node.keys(`t/chunk/{${victim.hash}-${victim.size}}/*`));
    }
    assert.equal(chunkKeys.length, 5, "5 chunks of 1 KiB");
    await raw.del(chunkKeys.sort()[1]!);
    assert.equal(await has(store, victim), undefined);
    await assertRejectsWithCode(store.read(victim), Code.NotFound);
    assert.equal(await raw.exists(`t/{${victim.hash}-${victim.size}}`), 0, "manifest deleted");
  } finally {
    raw.disconnect();
    await cleanup();
  }
});

Deno.test("redis_store: mode and addresses are checked when the config is built", () => {
  const registry = createStoreRegistry();
  const refused = (spec: Record<string, unknown>, message: RegExp) =>
    assert.throws(() => registry.build("R", { redis_store: spec }), message);
  refused({ addresses: ["redis://127.0.0.1:1"], mode: "clustered" }, /mode "clustered" is not one of/);
  refused(
    { addresses: ["redis://127.0.0.1:1", "redis://127.0.0.1:2"] },
    /standard mode takes exactly one address, got 2/,
  );
  refused({ addresses: ["redis://127.0.0.1:1/2"], mode: "cluster" }, /cluster mode has only database 0/);
  refused({ addresses: ["redis://127.0.0.1:1"], mode: "cluster", key_prefix: "{x}/" }, /must not contain/);
  refused({ addresses: ["redis-sentinel://127.0.0.1:1"], mode: "sentinel" }, /sentinelServiceName=NAME/);
  refused({ addresses: ["redis-sentinel://127.0.0.1:1?sentinelServiceName=m"] }, /standard mode takes redis/);
  const t = parseRedisAddresses("cluster", ["redis-cluster://u:p%40ss@10.0.0.1:7000?node=10.0.0.2:7001"]);
  assert.deepEqual(t.nodes, [{ host: "10.0.0.1", port: 7000 }, { host: "10.0.0.2", port: 7001 }]);
  assert.equal(t.password, "p@ss");
  const s = parseRedisAddresses("sentinel", [
    "rediss-sentinel://127.0.0.1/4?sentinelServiceName=main&node=127.0.0.2:26380&sentinelPassword=sp",
  ]);
  assert.deepEqual(s.nodes, [{ host: "127.0.0.1", port: 26379 }, { host: "127.0.0.2", port: 26380 }]);
  assert.equal(s.masterName, "main");
  assert.equal(s.db, 4);
  assert.equal(s.tls, true);
  assert.equal(s.sentinelPassword, "sp");
});
