/**
 * Seed 001's action-cache chain with its Redis part replaced by a `filesystem` store, behind the real
 * services and driven by @grpc/grpc-js: `completeness_checking → fast_slow(size_partitioning(memory |
 * noop), filesystem)`. UpdateActionResult must store (the AC key is partitioned on the action digest, and
 * no store compares the ActionResult's length with the action's size), GetActionResult must hit, and
 * after a restart (the memory part gone) the filesystem part must still serve the entries.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/ac_key_chain_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ActionCache,
  ActionResultSchema,
  ActionSchema,
  ContentAddressableStorage,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Digest, digestOf } from "../src/digest/digest.ts";
import { createHttpCacheRoute } from "../src/service/http_cache_route.ts";
import type { FastSlowStore } from "../src/store/fast_slow_store.ts";
import { acKey, has } from "../src/store/helpers.ts";
import { createStoreManager, type StoreManager } from "../src/store/store_manager.ts";
import { startCacheServer } from "./fixtures/cache_server.ts";
import { grpcJsClient } from "./fixtures/transport_fixtures.ts";

const AcClient = grpcJsClient(ActionCache);
const CasClient = grpcJsClient(ContentAddressableStorage);

/** Seed 001's AC and CAS stores, with `filesystem` where the seed has Redis and S3. */
function storesConfig(dir: string) {
  const fs = (name: string) => ({
    filesystem: { content_path: `${dir}/${name}/content`, temp_path: `${dir}/${name}/tmp` },
  });
  return {
    AC_FAST_SLOW_STORE: {
      fast_slow: {
        fast: {
          size_partitioning: {
            size: 1000,
            lower_store: { memory: { eviction_policy: { max_bytes: 100000000, max_count: 150000 } } },
            upper_store: { noop: {} },
          },
        },
        slow: fs("ac"),
      },
    },
    AC_STORE: {
      completeness_checking: {
        backend: { ref_store: { name: "AC_FAST_SLOW_STORE" } },
        cas_store: { ref_store: { name: "cas_STORE" } },
      },
    },
    cas_STORE: { verify: { backend: fs("cas"), verify_size: true, verify_hash: true } },
  };
}

interface Running {
  readonly stores: StoreManager;
  readonly ac: grpc.Client;
  readonly cas: grpc.Client;
  stop(): Promise<void>;
}

async function start(dir: string): Promise<Running> {
  const server = await startCacheServer({
    stores: storesConfig(dir),
    services: {
      cas: [{ instance_name: "main", cas_store: "cas_STORE" }],
      ac: [{ instance_name: "main", ac_store: "AC_STORE" }],
    },
  });
  const { port, stores } = server;
  const ac = new AcClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const cas = new CasClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    stores,
    ac,
    cas,
    async stop() {
      ac.close();
      cas.close();
      await server.close();
    },
  };
}

// deno-lint-ignore no-explicit-any
function unary(client: any, method: string, req: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    client[method](req, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
  });
}

async function rejectsWithCode(p: Promise<unknown>, code: grpc.status): Promise<void> {
  const err = await p.then(() => undefined, (e: grpc.ServiceError) => e);
  assert.ok(err !== undefined, `expected status ${grpc.status[code]}, but the call succeeded`);
  assert.equal(grpc.status[err.code], grpc.status[code], err.details);
}

const proto = (d: Digest) => ({ hash: d.hash, sizeBytes: BigInt(d.size) });

Deno.test("seed 001 AC chain with a filesystem slow store: UpdateActionResult stores, GetActionResult hits, also after a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn-ac-chain-" });
  let running: Running | undefined = await start(dir);
  try {
    const output = new TextEncoder().encode("the output file");
    const stdout = new TextEncoder().encode("a build log line\n");
    const up = await unary(running.cas, "batchUpdateBlobs", {
      instanceName: "main",
      requests: [output, stdout].map((b) => ({ digest: proto(digestOf(b)), data: b })),
    });
    assert.deepEqual(up.responses.map((r: { status?: { code: number } }) => r.status?.code ?? 0), [0, 0]);

    // Two actions: one below size_partitioning's 1000 bytes (memory + filesystem), one above (noop +
    // filesystem). Each result's length differs from its action's size.
    const small = digestOf(
      toBinary(ActionSchema, create(ActionSchema, { salt: new Uint8Array(100).fill(1) })),
    );
    const large = digestOf(
      toBinary(ActionSchema, create(ActionSchema, { salt: new Uint8Array(5000).fill(2) })),
    );
    const result = (exitCode: number) => ({
      exitCode,
      outputFiles: [{ path: "out/file", digest: proto(digestOf(output)) }],
      stdoutDigest: proto(digestOf(stdout)),
    });
    for (const [i, action] of [small, large].entries()) {
      const stored = await unary(running.ac, "updateActionResult", {
        instanceName: "main",
        actionDigest: proto(action),
        actionResult: result(i + 10),
      });
      assert.equal(stored.exitCode, i + 10);
    }
    const hit = async (r: Running, action: Digest, exitCode: number) => {
      const got = await unary(r.ac, "getActionResult", { instanceName: "main", actionDigest: proto(action) });
      assert.equal(got.exitCode, exitCode);
      assert.equal(got.outputFiles[0]?.path, "out/file");
      assert.equal(got.stdoutDigest?.hash, digestOf(stdout).hash);
    };
    await hit(running, small, 10);
    await hit(running, large, 11);
    // Where the entries went: both on disk; only the small action's in the memory part.
    const where = async (r: Running, action: Digest) => {
      const chain = r.stores.get("AC_FAST_SLOW_STORE") as FastSlowStore;
      return [
        await has(chain.fast, acKey(action)) !== undefined,
        await has(chain.slow, acKey(action)) !== undefined,
      ];
    };
    assert.deepEqual(await where(running, small), [true, true]);
    assert.deepEqual(await where(running, large), [false, true]);
    await rejectsWithCode(
      unary(running.ac, "getActionResult", { instanceName: "main", actionDigest: proto(digestOf(output)) }),
      grpc.status.NOT_FOUND,
    );

    // Restart: the memory part is empty, the filesystem part still has both entries.
    await running.stop();
    running = undefined;
    running = await start(dir);
    assert.deepEqual(await where(running, small), [false, true]);
    await hit(running, small, 10);
    await hit(running, large, 11);

    // completeness_checking still guards the chain: without the output blob it is a miss.
    await running.stores.get("cas_STORE").delete!(digestOf(output));
    await rejectsWithCode(
      unary(running.ac, "getActionResult", { instanceName: "main", actionDigest: proto(large) }),
      grpc.status.NOT_FOUND,
    );
  } finally {
    await running?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("HTTP cache records under string keys pass through completeness_checking and survive a restart", async () => {
  // The default config's AC (completeness_checking over filesystem) holds the HTTP cache's records: string
  // keys, which completeness_checking passes through (only AC keys hold ActionResults to check).
  const dir = await Deno.makeTempDir({ prefix: "cairn-http-records-" });
  const open = () =>
    createStoreManager({
      CAS: { filesystem: { content_path: `${dir}/cas/content`, temp_path: `${dir}/cas/tmp` } },
      AC: {
        completeness_checking: {
          backend: { filesystem: { content_path: `${dir}/ac/content`, temp_path: `${dir}/ac/tmp` } },
          cas_store: { ref_store: { name: "CAS" } },
        },
      },
    });
  const route = (stores: StoreManager) =>
    createHttpCacheRoute({
      instances: new Map([["", { casStore: stores.get("CAS"), acStore: stores.get("AC") }]]),
    });
  const blob = new TextEncoder().encode("an HTTP cache blob");
  const hash = digestOf(blob).hash;
  const result = toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 4 }));
  const actionHash = digestOf(new TextEncoder().encode("an action")).hash;
  try {
    const first = await open();
    try {
      const put = await route(first)(
        new Request(`http://x/cas/${hash}`, {
          method: "PUT",
          body: blob,
          headers: { "content-length": String(blob.byteLength) },
        }),
      );
      assert.equal(put?.status, 200);
      const putAc = await route(first)(
        new Request(`http://x/ac/${actionHash}`, { method: "PUT", body: result }),
      );
      assert.equal(putAc?.status, 200);
    } finally {
      await first.close();
    }
    const second = await open();
    try {
      const got = await route(second)(new Request(`http://x/cas/${hash}`));
      assert.equal(got?.status, 200);
      assert.deepEqual(new Uint8Array(await got!.arrayBuffer()), blob);
      const gotAc = await route(second)(new Request(`http://x/ac/${actionHash}`));
      assert.equal(gotAc?.status, 200);
      assert.deepEqual(new Uint8Array(await gotAc!.arrayBuffer()), result);
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
