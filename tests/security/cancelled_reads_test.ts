/**
 * A client that cancels large ByteStream reads must not stall its connection: HTTP/2 drops the unsent data
 * of a reset stream, and the server's send back-pressure must not keep counting it (it did: after two
 * cancelled 3 MB reads (12 MB here), the next read on the same connection hung).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { ByteStream } from "../../src/gen/google/bytestream/bytestream_pb.ts";
import { ContentAddressableStorage } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { createGrpcClientTransport } from "../../src/transport/grpc_client.ts";
import { memoryCacheConfig, startCairnProcess } from "../fixtures/cairn_process.ts";

Deno.test("cancelled large reads leave the connection serving the next read", async () => {
  const cairn = await startCairnProcess({ config: memoryCacheConfig() });
  try {
    const transport = createGrpcClientTransport(cairn.url);
    const bs = createClient(ByteStream, transport);
    const cas = createClient(ContentAddressableStorage, transport);
    const blob = new Uint8Array(randomBytes(12 * 1024 * 1024));
    const hash = createHash("sha256").update(blob).digest("hex");
    const name = `blobs/${hash}/${blob.length}`;
    const chunks = async function* () {
      for (let o = 0; o < blob.length; o += 1 << 20) {
        yield {
          resourceName: o === 0 ? `uploads/${crypto.randomUUID()}/${name}` : "",
          writeOffset: BigInt(o),
          finishWrite: o + (1 << 20) >= blob.length,
          data: blob.subarray(o, o + (1 << 20)),
        };
      }
    };
    await bs.write(chunks());
    // Several reads on the same connection, each cancelled after its first message.
    for (let i = 0; i < 4; i++) {
      const abort = new AbortController();
      let got = 0;
      try {
        for await (const r of bs.read({ resourceName: name }, { signal: abort.signal })) {
          got += r.data.length;
          abort.abort();
        }
      } catch { /* cancelled */ }
      assert.ok(got > 0, `read ${i} got nothing before its cancel`);
    }
    // The next full read on that connection completes (bounded), bytes intact.
    let n = 0;
    const h = createHash("sha256");
    for await (const r of bs.read({ resourceName: name }, { timeoutMs: 30_000 })) {
      n += r.data.length;
      h.update(r.data);
    }
    assert.equal(n, blob.length);
    assert.equal(h.digest("hex"), hash);
    const missing = await cas.findMissingBlobs({ blobDigests: [{ hash, sizeBytes: BigInt(blob.length) }] });
    assert.equal(missing.missingBlobDigests.length, 0);
  } finally {
    await cairn.stop();
  }
});
