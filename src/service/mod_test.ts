import assert from "node:assert/strict";
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../gen/google/bytestream/bytestream_pb.ts";
import { Health } from "../gen/grpc/health/v1/health_pb.ts";
import { Fetch, Push } from "../gen/build/bazel/remote/asset/v1/remote_asset_pb.ts";
import { digestOf } from "../digest/digest.ts";
import { createStoreManager } from "../store/store_manager.ts";
import { Code } from "../util/error.ts";
import { toProto } from "./cas_service.ts";
import { buildServiceBindings } from "./mod.ts";
import { rejectsWithCode, serviceClient } from "../../tests/fixtures/service_testing.ts";

async function stores() {
  return await createStoreManager({
    CAS: { memory: {} },
    AC: { memory: {} },
    ASSETS: { memory: {} },
  });
}

Deno.test("buildServiceBindings maps the services config to bindings, routes and capabilities", async () => {
  const manager = await stores();
  const built = buildServiceBindings({
    services: {
      cas: [{ instance_name: "", cas_store: "CAS" }, { instance_name: "main", cas_store: "CAS" }],
      ac: [{ instance_name: "", ac_store: "AC" }, { instance_name: "main", ac_store: "AC", read_only: true }],
      bytestream: [{ instance_name: "", cas_store: "CAS" }, { instance_name: "main", cas_store: "CAS" }],
      capabilities: [{ instance_name: "main", remote_execution: { scheduler: "MAIN" } }],
      execution: [{ instance_name: "main", cas_store: "CAS", scheduler: "MAIN" }],
      health: {},
    },
    stores: manager,
    schedulers: new Map([["MAIN", {}]]),
  });
  try {
    const names = built.bindings.map((b) => b.service.typeName);
    for (const s of [ContentAddressableStorage, ActionCache, ByteStream, Capabilities, Health]) {
      assert.ok(names.includes(s.typeName), s.typeName);
    }
    assert.deepEqual(built.unhandled, ["execution"]);
    const impl = (s: { typeName: string }) =>
      built.bindings.find((b) => b.service.typeName === s.typeName)!.impl;
    const caps = serviceClient(Capabilities, impl(Capabilities));
    const c0 = await caps.getCapabilities({ instanceName: "" });
    assert.equal(c0.executionCapabilities, undefined);
    assert.equal(c0.cacheCapabilities?.actionCacheUpdateCapabilities?.updateEnabled, true);
    const cm = await caps.getCapabilities({ instanceName: "main" });
    assert.equal(cm.executionCapabilities?.execEnabled, true);
    assert.equal(cm.cacheCapabilities?.actionCacheUpdateCapabilities?.updateEnabled, false);
    await rejectsWithCode(caps.getCapabilities({ instanceName: "zzz" }), Code.NotFound);

    // The AC inlines from the instance's CAS; status and HTTP cache routes are present.
    const data = new TextEncoder().encode("stdout!");
    const cas = serviceClient(ContentAddressableStorage, impl(ContentAddressableStorage));
    await cas.batchUpdateBlobs({ requests: [{ digest: toProto(digestOf(data)), data }] });
    const ac = serviceClient(ActionCache, impl(ActionCache));
    const action = toProto(digestOf(new TextEncoder().encode("a")));
    await ac.updateActionResult({
      actionDigest: action,
      actionResult: { stdoutDigest: toProto(digestOf(data)) },
    });
    const r = await ac.getActionResult({ actionDigest: action, inlineStdout: true });
    assert.deepEqual(r.stdoutRaw, data);

    const answer = async (path: string) => {
      for (const route of built.routes) {
        const res = await route(new Request(`http://h${path}`));
        if (res) return res;
      }
      return undefined;
    };
    const status = await answer("/status");
    assert.equal(status?.status, 200);
    assert.deepEqual(await status?.json(), { status: "ok", stores: { CAS: "ok", AC: "ok", ASSETS: "ok" } });
    const blob = await answer(`/cas/${digestOf(data).hash}`);
    assert.equal(blob?.status, 404); // written over gRPC only: no HTTP size record
    await blob?.body?.cancel();
  } finally {
    await built.close();
    await manager.close();
  }
});

Deno.test("Extensions build execution and worker_api; capabilities: [] serves every configured instance", async () => {
  const manager = await stores();
  const built = buildServiceBindings({
    services: {
      cas: [{ instance_name: "x", cas_store: "CAS" }],
      capabilities: [],
      worker_api: { scheduler: "S" },
    },
    stores: manager,
    extensions: [(ctx) => ctx.services.worker_api ? { handles: ["worker_api"], bindings: [] } : undefined],
  });
  try {
    assert.deepEqual(built.unhandled, []);
    const caps = serviceClient(Capabilities, built.bindings.find((b) => b.service === Capabilities)!.impl);
    assert.equal((await caps.getCapabilities({ instanceName: "x" })).executionCapabilities, undefined);
    assert.equal(built.routes.length, 0);
  } finally {
    await built.close();
    await manager.close();
  }
});

Deno.test("Remote Asset: Push records a URI, Fetch answers it, unknown URIs are NOT_FOUND", async () => {
  const manager = await stores();
  const built = buildServiceBindings({
    services: {
      fetch: [{ instance_name: "", fetch_store: "ASSETS" }],
      push: [{ instance_name: "", push_store: "ASSETS" }],
    },
    stores: manager,
  });
  try {
    const push = serviceClient(Push, built.bindings.find((b) => b.service === Push)!.impl);
    const fetch = serviceClient(Fetch, built.bindings.find((b) => b.service === Fetch)!.impl);
    const d = digestOf(new TextEncoder().encode("archive"));
    const qualifiers = [{ name: "checksum.sri", value: "sha256-abc" }];
    await push.pushBlob({ uris: ["https://e.org/a.tgz"], qualifiers, blobDigest: toProto(d) });
    const got = await fetch.fetchBlob({ uris: ["https://mirror/a.tgz", "https://e.org/a.tgz"], qualifiers });
    assert.deepEqual([got.uri, got.blobDigest?.hash, got.status?.code], ["https://e.org/a.tgz", d.hash, 0]);
    await rejectsWithCode(fetch.fetchBlob({ uris: ["https://e.org/a.tgz"] }), Code.NotFound);
  } finally {
    await built.close();
    await manager.close();
  }
});

Deno.test("Capabilities tell the truth per instance: node properties from the scheduler, zstd only where accepted", async () => {
  const manager = await stores();
  const built = buildServiceBindings({
    services: {
      cas: [{ instance_name: "", cas_store: "CAS" }, { instance_name: "plain", cas_store: "CAS" }],
      ac: [{ instance_name: "", ac_store: "AC" }, { instance_name: "acOnly", ac_store: "AC" }],
      bytestream: [{ instance_name: "", cas_store: "CAS" }, { instance_name: "plain", cas_store: "CAS" }],
      execution: [{ instance_name: "", cas_store: "CAS", scheduler: "MAIN" }],
      capabilities: [
        { instance_name: "" },
        { instance_name: "plain", remote_cache_compression: false },
        { instance_name: "acOnly" },
      ],
    },
    stores: manager,
    schedulers: new Map([["MAIN", {}]]),
    nodeProperties: new Map([["MAIN", ["OSFamily", "cpu_count"]]]),
    extensions: [(ctx) => ctx.services.execution ? { handles: ["execution"] } : undefined],
  });
  try {
    const impl = (s: { typeName: string }) =>
      built.bindings.find((b) => b.service.typeName === s.typeName)!.impl;
    const caps = serviceClient(Capabilities, impl(Capabilities));
    const ZSTD = 1; // Compressor.Value.ZSTD

    const main = await caps.getCapabilities({ instanceName: "" });
    assert.deepEqual(main.executionCapabilities?.supportedNodeProperties, ["OSFamily", "cpu_count"]);
    assert.deepEqual(main.cacheCapabilities?.supportedCompressors, [ZSTD]);
    assert.deepEqual(main.cacheCapabilities?.supportedBatchUpdateCompressors, [ZSTD]);

    // No ByteStream and no CAS on this instance: nothing that would accept zstd, so none advertised.
    const acOnly = await caps.getCapabilities({ instanceName: "acOnly" });
    assert.deepEqual(acOnly.cacheCapabilities?.supportedCompressors, []);
    assert.deepEqual(acOnly.cacheCapabilities?.supportedBatchUpdateCompressors, []);
    assert.equal(acOnly.executionCapabilities, undefined);

    // remote_cache_compression: false: not advertised, and the CAS and ByteStream refuse zstd.
    const plain = await caps.getCapabilities({ instanceName: "plain" });
    assert.deepEqual(plain.cacheCapabilities?.supportedCompressors, []);
    assert.deepEqual(plain.cacheCapabilities?.supportedBatchUpdateCompressors, []);
    const data = new TextEncoder().encode("zstd?");
    const digest = toProto(digestOf(data));
    const cas = serviceClient(ContentAddressableStorage, impl(ContentAddressableStorage));
    const up = await cas.batchUpdateBlobs({
      instanceName: "plain",
      requests: [{ digest, data, compressor: ZSTD }],
    });
    assert.equal(up.responses[0]?.status?.code, Code.InvalidArgument);
    await cas.batchUpdateBlobs({ instanceName: "plain", requests: [{ digest, data }] });
    const read = await cas.batchReadBlobs({
      instanceName: "plain",
      digests: [digest],
      acceptableCompressors: [ZSTD],
    });
    assert.equal(read.responses[0]?.compressor, 0); // IDENTITY
    const bs = serviceClient(ByteStream, impl(ByteStream));
    const d = digestOf(data);
    await rejectsWithCode(
      (async () => {
        for await (const _ of bs.read({ resourceName: `plain/compressed-blobs/zstd/${d.hash}/${d.size}` })) {
          // drain
        }
      })(),
      Code.InvalidArgument,
    );
    // The default instance still takes zstd through ByteStream.
    const chunks: Uint8Array[] = [];
    for await (const r of bs.read({ resourceName: `compressed-blobs/zstd/${d.hash}/${d.size}` })) {
      chunks.push(r.data);
    }
    assert.ok(chunks.length > 0);
  } finally {
    await built.close();
    await manager.close();
  }
});
