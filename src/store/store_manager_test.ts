import assert from "node:assert/strict";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode } from "./conformance_suite.ts";
import { has, putBytes } from "./helpers.ts";
import { createStoreRegistry } from "./registry.ts";
import { createStoreManager } from "./store_manager.ts";
import type { StoreDriver } from "./types.ts";

Deno.test("store manager: accepts map, list and NativeLink list forms", async () => {
  for (
    const config of [
      { A: { memory: {} }, B: { noop: {} } },
      [{ name: "A", spec: { memory: {} } }, { name: "B", spec: { noop: {} } }],
      [{ name: "A", memory: {} }, { name: "B", noop: {} }],
    ]
  ) {
    const stores = await createStoreManager(config);
    try {
      assert.deepEqual(stores.names(), ["A", "B"]);
      assert.equal(stores.get("A").kind, "memory");
      assert.equal(stores.get("B").kind, "noop");
    } finally {
      await stores.close();
    }
  }
});

Deno.test("store manager: lookup of an unknown name lists the defined stores", async () => {
  const stores = await createStoreManager({ CAS: { memory: {} } });
  try {
    assert.throws(() => stores.get("AC"), /No store named "AC"; defined stores are CAS/);
    assert.equal(stores.has("CAS"), true);
  } finally {
    await stores.close();
  }
});

Deno.test("store manager: init runs once per store and close closes each once, also after a failure", async () => {
  const registry = createStoreRegistry();
  const events: string[] = [];
  const probe = (name: string, failInit = false): StoreDriver => ({
    kind: "probe",
    hasMany: (keys) => Promise.resolve(keys.map(() => undefined)),
    read: () => Promise.reject(new Error("unused")),
    write: () => Promise.reject(new Error("unused")),
    init: () => {
      events.push(`init ${name}`);
      return failInit ? Promise.reject(new Error("boom")) : Promise.resolve();
    },
    close: () => {
      events.push(`close ${name}`);
      return Promise.resolve();
    },
  });
  registry.register("probe", (fields) => probe(String(fields.name), fields.fail === true));
  const stores = await createStoreManager({ X: { probe: { name: "x" } }, Y: { probe: { name: "y" } } }, {
    registry,
  });
  await stores.close();
  await stores.close();
  assert.deepEqual(events, ["init x", "init y", "close y", "close x"]);
  events.length = 0;
  const err = await assertRejectsWithCode(
    createStoreManager({ X: { probe: { name: "x" } }, Y: { probe: { name: "y", fail: true } } }, {
      registry,
    }),
    Code.Internal,
  );
  assert.match(err.message, /Cannot open store "Y": boom/);
  assert.deepEqual(events, ["init x", "init y", "close y", "close x"]);
});

Deno.test("store manager: check reports each store's health", async () => {
  const registry = createStoreRegistry();
  registry.register("broken", () => ({
    kind: "broken",
    hasMany: () => Promise.reject(new Error("backend unreachable")),
    read: () => Promise.reject(new Error("unused")),
    write: () => Promise.reject(new Error("unused")),
  }));
  const stores = await createStoreManager({ GOOD: { memory: {} }, BAD: { broken: {} } }, { registry });
  try {
    await putBytes(stores.get("GOOD"), "k", new Uint8Array(1));
    assert.equal(await has(stores.get("GOOD"), "k"), 1);
    const health = await stores.check();
    assert.deepEqual(health.map((h) => [h.name, h.kind, h.ok, h.error]), [
      ["GOOD", "memory", true, undefined],
      ["BAD", "broken", false, "backend unreachable"],
    ]);
  } finally {
    await stores.close();
  }
});

Deno.test("store manager: duplicate names are refused", async () => {
  await assertRejectsWithCode(
    createStoreManager([{ name: "A", memory: {} }, { name: "A", noop: {} }]),
    Code.InvalidArgument,
  );
});

Deno.test("store manager: backends lists nested outside-service stores, which the status route then probes", async () => {
  const { createStatusRoute } = await import("../service/status_route.ts");
  // An empty-digest probe of SPLIT only reaches its lower (memory) side: the dead Redis upper side, where
  // large blobs go, is found only by probing it directly.
  const { freeLoopbackPort } = await import("../../tests/fixtures/backends.ts");
  const redis = { redis_store: { addresses: [`redis://127.0.0.1:${freeLoopbackPort()}`] } };
  const stores = await createStoreManager({
    SPLIT: { size_partitioning: { size: 1000, lower_store: { memory: {} }, upper_store: redis } },
    TOP: redis,
  });
  try {
    const backends = stores.backends();
    assert.deepEqual(backends.map(([name]) => name), ["SPLIT/size_partitioning.upper_store.redis_store"]);
    assert.equal(backends[0]![1].kind, "redis_store");
    const topOnly = createStatusRoute({ stores: [["SPLIT", stores.get("SPLIT")]], timeoutSeconds: 20 });
    assert.equal((await topOnly(new Request("http://h/status")))?.status, 200);
    const route = createStatusRoute({
      stores: [["SPLIT", stores.get("SPLIT")], ...backends],
      timeoutSeconds: 20,
    });
    const res = await route(new Request("http://h/status"));
    assert.equal(res?.status, 503);
    const body = await res?.json();
    assert.equal(body.stores.SPLIT, "ok");
    assert.match(
      body.stores["SPLIT/size_partitioning.upper_store.redis_store"],
      /redis_store .*127\.0\.0\.1/,
    );
  } finally {
    await stores.close();
  }
});
