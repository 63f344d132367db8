// The remote-cache services end to end over the real transport (gRPC over HTTP/2 and plain HTTP on one
// port), built from a services config by buildServiceBindings with real memory stores.
import assert from "node:assert/strict";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  ActionCache,
  Capabilities,
  Compressor_Value,
  ContentAddressableStorage,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.ts";
import { digestOf } from "../src/digest/digest.ts";
import { formatReadResourceName, formatWriteResourceName } from "../src/digest/resource_name.ts";
import { toProto } from "../src/service/cas_service.ts";
import { zstdCompress, zstdDecompress } from "../src/service/zstd_stream.ts";
import { acKey, putBytes } from "../src/store/helpers.ts";
import type { StoreManager } from "../src/store/store_manager.ts";
import { startCacheServer } from "./fixtures/cache_server.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import { concatBytes, patternBytes } from "../src/util/streams.ts";
import { Code } from "../src/util/error.ts";

async function withCache(
  fn: (c: {
    cas: Client<typeof ContentAddressableStorage>;
    bs: Client<typeof ByteStream>;
    ac: Client<typeof ActionCache>;
    caps: Client<typeof Capabilities>;
    health: Client<typeof Health>;
    base: string;
    stores: StoreManager;
  }) => Promise<void>,
) {
  const server = await startCacheServer({
    instance: "main",
    services: {
      cas: [{ instance_name: "main", cas_store: "CAS" }],
      ac: [{ instance_name: "main", ac_store: "AC" }],
      bytestream: [{ instance_name: "main", cas_store: "CAS" }],
      capabilities: [{ instance_name: "main" }],
      health: {},
    },
  });
  const { port, stores } = server;
  const transport = createGrpcClientTransport(`grpc://127.0.0.1:${port}`);
  try {
    await fn({
      cas: createClient(ContentAddressableStorage, transport),
      bs: createClient(ByteStream, transport),
      ac: createClient(ActionCache, transport),
      caps: createClient(Capabilities, transport),
      health: createClient(Health, transport),
      base: `http://127.0.0.1:${port}`,
      stores,
    });
  } finally {
    await server.close();
  }
}

Deno.test("Cache services over gRPC: capabilities, batches, ByteStream (plain and zstd), AC, health", async () => {
  await withCache(async ({ cas, bs, ac, caps, health }) => {
    const c = await caps.getCapabilities({ instanceName: "main" });
    assert.equal(c.cacheCapabilities?.maxBatchTotalSizeBytes, 4n * 1024n * 1024n);
    assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);

    const small = new TextEncoder().encode("small blob");
    const up = await cas.batchUpdateBlobs({
      instanceName: "main",
      requests: [{ digest: toProto(digestOf(small)), data: small }],
    });
    assert.equal(up.responses[0]?.status?.code, 0);

    const big = await patternBytes(5 * 1024 * 1024 + 17, 21);
    const d = digestOf(big);
    const name = formatWriteResourceName({
      instanceName: "main",
      uuid: "it-1",
      compressor: "identity",
      digest: d,
    });
    const res = await bs.write((async function* () {
      for (let pos = 0; pos < big.byteLength; pos += 512 * 1024) {
        const data = big.subarray(pos, pos + 512 * 1024);
        yield {
          resourceName: pos === 0 ? name : "",
          writeOffset: BigInt(pos),
          data,
          finishWrite: pos + data.byteLength >= big.byteLength,
        };
      }
    })());
    assert.equal(res.committedSize, BigInt(big.byteLength));
    const missing = await cas.findMissingBlobs({ instanceName: "main", blobDigests: [toProto(d)] });
    assert.equal(missing.missingBlobDigests.length, 0);

    const chunks: Uint8Array[] = [];
    for await (
      const r of bs.read({
        resourceName: formatReadResourceName({ instanceName: "main", compressor: "identity", digest: d }),
      })
    ) {
      assert.ok(r.data.byteLength <= 2 * 1024 * 1024);
      chunks.push(r.data);
    }
    assert.deepEqual(concatBytes(chunks), big);

    // Ranged reads and refused reads on the gRPC fast path (encoded ReadResponses).
    const readName = formatReadResourceName({ instanceName: "main", compressor: "identity", digest: d });
    const ranged: Uint8Array[] = [];
    for await (
      const r of bs.read({ resourceName: readName, readOffset: 1_000_000n, readLimit: 3_000_001n })
    ) {
      ranged.push(r.data);
    }
    assert.deepEqual(concatBytes(ranged), big.subarray(1_000_000, 4_000_001));
    const drain = async (req: { resourceName: string; readOffset?: bigint }) => {
      for await (const _ of bs.read(req)) { /* consume */ }
    };
    await assert.rejects(
      drain({ resourceName: readName, readOffset: BigInt(big.byteLength + 1) }),
      (e: { code?: number }) => e.code === Code.OutOfRange,
    );
    const absent = digestOf(new TextEncoder().encode("absent blob"));
    await assert.rejects(
      drain({
        resourceName: formatReadResourceName({
          instanceName: "main",
          compressor: "identity",
          digest: absent,
        }),
      }),
      (e: { code?: number }) => e.code === Code.NotFound,
    );
    await assert.rejects(
      drain({ resourceName: "main/blobs/xyz/12" }),
      (e: { code?: number }) => e.code === Code.InvalidArgument,
    );

    const text = new TextEncoder().encode("compress me ".repeat(10_000));
    const td = digestOf(text);
    const zname = formatWriteResourceName({
      instanceName: "main",
      uuid: "it-2",
      compressor: "zstd",
      digest: td,
    });
    const packed = zstdCompress(text);
    await bs.write((async function* () {
      yield { resourceName: zname, writeOffset: 0n, data: packed, finishWrite: true };
    })());
    const zchunks: Uint8Array[] = [];
    for await (
      const r of bs.read({
        resourceName: formatReadResourceName({ instanceName: "main", compressor: "zstd", digest: td }),
      })
    ) {
      zchunks.push(r.data);
    }
    assert.deepEqual(zstdDecompress(concatBytes(zchunks), td.size), text);
    const batch = await cas.batchReadBlobs({
      instanceName: "main",
      digests: [toProto(td)],
      acceptableCompressors: [Compressor_Value.ZSTD],
    });
    assert.deepEqual(zstdDecompress(batch.responses[0]!.data, td.size), text);

    const action = toProto(digestOf(new TextEncoder().encode("action")));
    await ac.updateActionResult({
      instanceName: "main",
      actionDigest: action,
      actionResult: { exitCode: 0, stdoutDigest: toProto(td) },
    });
    const got = await ac.getActionResult({ instanceName: "main", actionDigest: action, inlineStdout: true });
    assert.deepEqual(got.stdoutRaw, text);

    await assert.rejects(
      ac.getActionResult({ instanceName: "other", actionDigest: action }),
      (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, 3);
        assert.match(err.rawMessage, /known instances are "main"/);
        return true;
      },
    );
  });
});

Deno.test("Bazel's HTTP cache protocol and the status route on the same port", async () => {
  await withCache(async ({ base }) => {
    const body = await patternBytes(1024 * 1024, 22);
    const d = digestOf(body);
    const put = await fetch(`${base}/main/cas/${d.hash}`, {
      method: "PUT",
      body: body as Uint8Array<ArrayBuffer>,
    });
    assert.equal(put.status, 200);
    await put.body?.cancel();
    const get = await fetch(`${base}/main/cas/${d.hash}`);
    assert.equal(get.status, 200);
    assert.deepEqual(new Uint8Array(await get.arrayBuffer()), body);
    const status = await fetch(`${base}/status`);
    assert.deepEqual(await status.json(), { status: "ok", stores: { CAS: "ok", AC: "ok" } });
  });
});

Deno.test("GetActionResult answers a damaged entry alike over gRPC (encoded fast path) and Connect (decoded)", async () => {
  await withCache(async ({ ac, base, stores }) => {
    const connect = createClient(ActionCache, createConnectTransport({ baseUrl: base, httpVersion: "2" }));
    // Well-formed at the top level (exit_code, then output_files as a length-delimited field), but the
    // OutputFile inside is cut short: its path claims 127 bytes and holds 2.
    const nested = new Uint8Array([0x20, 0x00, 0x12, 0x04, 0x0a, 0x7f, 0x61, 0x62]);
    // Damaged at the top level: a length running past the end.
    const top = new Uint8Array([0x0a, 0x7f, 0x01, 0x02]);
    for (const [name, bytes] of [["nested", nested], ["top level", top]] as const) {
      const action = digestOf(new TextEncoder().encode(`damaged ${name}`));
      await putBytes(stores.get("AC"), acKey(action), bytes);
      const codes: (Code | undefined)[] = [];
      for (const client of [ac, connect]) {
        const err = await client.getActionResult({ instanceName: "main", actionDigest: toProto(action) })
          .then(
            () => undefined,
            (e) => ConnectError.from(e),
          );
        codes.push(err?.code as Code | undefined);
      }
      assert.deepEqual(codes, [Code.NotFound, Code.NotFound], `${name}: gRPC and Connect codes`);
    }
  });
});
