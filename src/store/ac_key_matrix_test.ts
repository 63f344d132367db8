/**
 * Action-cache keys through every store kind, built from NativeLink-style configs: each kind round-trips
 * AC entries whose ActionResult length differs from the action digest's size (write, hasMany, read,
 * getBytes), and the routing kinds place an entry by the action digest (size_partitioning on its size,
 * shard on its hash), never by the stored value's length.
 *
 * @example
 * ```sh
 * deno test --allow-all src/store/ac_key_matrix_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Digest, digestOf } from "../digest/digest.ts";
import { ActionResultSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { Code } from "../util/error.ts";
import { bytesStream, collectBytes, patternBytes } from "../util/streams.ts";
import { startCacheServer } from "../../tests/fixtures/cache_server.ts";
import { assertRejectsWithCode } from "./conformance_suite.ts";
import type { FastSlowStore } from "./fast_slow_store.ts";
import { acKey, getBytes, has } from "./helpers.ts";
import type { ShardStore } from "./shard_store.ts";
import { createStoreManager, type StoreManager } from "./store_manager.ts";
import type { AcKey, StoreDriver } from "./types.ts";

/** Below this action size, `size_partitioning` cases send entries to `LOWER`. */
const PARTITION = 1000;

interface Entry {
  readonly action: Digest;
  readonly key: AcKey;
  readonly result: Uint8Array;
}

/** A small action with a big result and a big action with a small result (both sides of PARTITION). */
async function entries(): Promise<Entry[]> {
  const make = async (actionSize: number, stdout: number, seed: number): Promise<Entry> => {
    const action = digestOf(await patternBytes(actionSize, seed));
    const result = toBinary(
      ActionResultSchema,
      create(ActionResultSchema, { exitCode: seed, stdoutRaw: await patternBytes(stdout, seed) }),
    );
    return { action, key: acKey(action), result };
  };
  const out = [await make(40, 3000, 1), await make(5000, 5, 2)];
  assert.ok(out[0]!.action.size < PARTITION && out[0]!.result.byteLength >= PARTITION);
  assert.ok(out[1]!.action.size >= PARTITION && out[1]!.result.byteLength < PARTITION);
  return out;
}

interface Case {
  readonly name: string;
  /** Named stores; the one under test is `AC`. */
  readonly config: (dir: string, upstream: string) => Record<string, unknown>;
  /** The kind keeps what is written (false for `noop`). */
  readonly retains?: boolean;
  /** Extra checks after the round trip (where entries landed). */
  readonly inspect?: (stores: StoreManager, all: readonly Entry[]) => Promise<void>;
}

const memory = { memory: {} };
const fs = (dir: string, name: string) => ({
  filesystem: { content_path: `${dir}/${name}/content`, temp_path: `${dir}/${name}/tmp` },
});
const ref = (name: string) => ({ ref_store: { name } });

/** Asserts which of the named stores hold each entry. */
async function expectIn(stores: StoreManager, entry: Entry, holders: string[], others: string[]) {
  for (const n of holders) assert.equal(await has(stores.get(n), entry.key), entry.result.byteLength, n);
  for (const n of others) assert.equal(await has(stores.get(n), entry.key), undefined, n);
}

const CASES: readonly Case[] = [
  { name: "memory", config: () => ({ AC: memory }) },
  { name: "filesystem", config: (dir) => ({ AC: fs(dir, "ac") }) },
  { name: "noop", config: () => ({ AC: { noop: {} } }), retains: false },
  {
    name: "verify (size and hash)",
    config: () => ({ AC: { verify: { backend: memory, verify_size: true, verify_hash: true } } }),
  },
  {
    name: "compression (over filesystem)",
    config: (dir) => ({
      AC: { compression: { compression_algorithm: { lz4: { block_size: 1024 } }, backend: fs(dir, "lz4") } },
    }),
  },
  {
    name: "dedup",
    config: () => ({ AC: { dedup: { index_store: memory, content_store: memory } } }),
  },
  { name: "ref_store", config: () => ({ AC: ref("TARGET"), TARGET: memory }) },
  {
    name: "existence_cache",
    config: () => ({ AC: { existence_cache: { backend: memory, eviction_policy: { max_count: 100 } } } }),
  },
  {
    name: "completeness_checking",
    config: () => ({ AC: { completeness_checking: { backend: memory, cas_store: memory } } }),
  },
  {
    name: "fast_slow (memory | filesystem)",
    config: (dir) => ({
      AC: { fast_slow: { fast: ref("FAST"), slow: ref("SLOW") } },
      FAST: memory,
      SLOW: fs(dir, "slow"),
    }),
    inspect: async (stores, all) => {
      for (const e of all) await expectIn(stores, e, ["FAST", "SLOW"], []);
      // An entry only in the slow store: a read serves it whole and fills the fast store (its length comes
      // from the slow store, not from the action digest).
      const [only] = await entries();
      const late = { ...only!, key: acKey({ ...only!.action, hash: "f".repeat(64) }) };
      await stores.get("SLOW").write(late.key, bytesStream(late.result), { exact: late.result.byteLength });
      const chain = stores.get("AC") as FastSlowStore;
      assert.deepEqual(await getBytes(chain, late.key, { maxSize: 1 << 20 }), late.result);
      await chain.settled();
      await expectIn(stores, late, ["FAST", "SLOW"], []);
    },
  },
  {
    name: "size_partitioning (on the action digest's size)",
    config: () => ({
      AC: { size_partitioning: { size: PARTITION, lower_store: ref("LOWER"), upper_store: ref("UPPER") } },
      LOWER: memory,
      UPPER: memory,
    }),
    inspect: async (stores, [small, big]) => {
      // The big result of the small action goes down; the small result of the big action goes up.
      await expectIn(stores, small!, ["LOWER"], ["UPPER"]);
      await expectIn(stores, big!, ["UPPER"], ["LOWER"]);
    },
  },
  {
    name: "shard (on the action digest's hash)",
    config: () => ({
      AC: {
        shard: { stores: [{ store: ref("S0") }, { store: ref("S1") }, { store: ref("S2"), weight: 2 }] },
      },
      S0: memory,
      S1: memory,
      S2: memory,
    }),
    inspect: async (stores, all) => {
      const shard = stores.get("AC") as ShardStore;
      const names = ["S0", "S1", "S2"];
      for (const e of all) {
        const i = shard.shardIndex(e.action);
        assert.equal(shard.shardIndex(e.key), i, "an AC key lands where its action's digest does");
        await expectIn(stores, e, [names[i]!], names.filter((_, j) => j !== i));
      }
    },
  },
  {
    name: "grpc (store_type ac)",
    config: (_dir, upstream) => ({
      AC: { grpc: { instance_name: "main", endpoints: [{ address: upstream }], store_type: "ac" } },
    }),
  },
  {
    name:
      "seed 001 AC chain: completeness_checking → fast_slow(size_partitioning(memory | noop), filesystem)",
    config: (dir) => ({
      AC: { completeness_checking: { backend: ref("AC_FAST_SLOW"), cas_store: ref("CAS") } },
      AC_FAST_SLOW: {
        fast_slow: {
          fast: {
            size_partitioning: { size: PARTITION, lower_store: ref("LOWER"), upper_store: { noop: {} } },
          },
          slow: ref("SLOW"),
        },
      },
      LOWER: memory,
      SLOW: fs(dir, "slow"),
      CAS: memory,
    }),
    inspect: async (stores, [small, big]) => {
      await expectIn(stores, small!, ["LOWER", "SLOW"], []);
      await expectIn(stores, big!, ["SLOW"], ["LOWER"]);
    },
  },
];

for (const c of CASES) {
  Deno.test(`AC keys through ${c.name}: results of any length round trip`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "cairn-ackey-" });
    const upstream = c.name.startsWith("grpc") ? await startCacheServer({ instance: "main" }) : undefined;
    const stores = await createStoreManager(c.config(dir, upstream?.address ?? "grpc://127.0.0.1:1"));
    try {
      const store: StoreDriver = stores.get("AC");
      const all = await entries();
      const [first, second] = all;
      await store.write(first!.key, bytesStream(first!.result), { exact: first!.result.byteLength });
      await store.write(second!.key, bytesStream(second!.result), { max: 1 << 20 });
      const retains = c.retains ?? true;
      assert.deepEqual(
        await store.hasMany([first!.key, second!.key, first!.action]),
        retains
          ? [first!.result.byteLength, second!.result.byteLength, undefined]
          : [undefined, undefined, undefined],
      );
      for (const e of all) {
        if (!retains) {
          await assertRejectsWithCode(store.read(e.key), Code.NotFound);
          continue;
        }
        const streamed = await collectBytes(await store.read(e.key), 1 << 20);
        assert.ok(Buffer.compare(streamed, e.result) === 0, "read");
        assert.deepEqual(await getBytes(store, e.key, { maxSize: 1 << 20 }), e.result);
        assert.deepEqual(
          await getBytes(store, e.key, { maxSize: 1 << 20, offset: 1, length: 3 }),
          e.result.subarray(1, 4),
        );
      }
      await c.inspect?.(stores, all);
    } finally {
      await stores.close();
      await upstream?.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
