// ByteStream Read of large blobs from a filesystem CAS over the real transport, driven by @grpc/grpc-js (an
// independent client): the file is read straight into the messages' buffers, two buffers alternate per
// call, and the connection's socket is corked while a message goes out (see grpc_handler.ts). Concurrent
// reads on one connection, ranges and a cancelled read must all keep every byte in place.
// Runs on the node:http2 path; CAIRN_SERVER_PATH=deno_serve runs it on the Deno.serve path.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import grpc from "@grpc/grpc-js";
import { ByteStream } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { type Digest, digestOf } from "../src/digest/digest.ts";
import { formatReadResourceName } from "../src/digest/resource_name.ts";
import { putBytes } from "../src/store/helpers.ts";
import { patternBytes } from "../src/util/streams.ts";
import { startCacheServer } from "./fixtures/cache_server.ts";
import { grpcJsClient } from "./fixtures/transport_fixtures.ts";

const ByteStreamClient = grpcJsClient(ByteStream);
const MiB = 1024 * 1024;

interface ReadResult {
  readonly sha256: string;
  readonly bytes: number;
  readonly largest: number;
}

/** Reads `name` (from `offset`, at most `limit` bytes) with grpc-js; hashes what arrives. */
// deno-lint-ignore no-explicit-any
function read(client: any, name: string, offset = 0, limit = 0): Promise<ReadResult> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    let bytes = 0;
    let largest = 0;
    const call = client.read({ resourceName: name, readOffset: BigInt(offset), readLimit: BigInt(limit) });
    call.on("data", (m: { data: Uint8Array }) => {
      h.update(m.data);
      bytes += m.data.byteLength;
      largest = Math.max(largest, m.data.byteLength);
    });
    call.on("error", reject);
    call.on("end", () => resolve({ sha256: h.digest("hex"), bytes, largest }));
  });
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

Deno.test("ByteStream Read of large filesystem blobs: whole, ranged and concurrent reads keep every byte", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn_bs_read_" });
  const server = await startCacheServer({
    stores: {
      CAS: { filesystem: { content_path: `${dir}/content`, temp_path: `${dir}/tmp` } },
      AC: { memory: {} },
    },
    services: {
      cas: [{ instance_name: "", cas_store: "CAS" }],
      ac: [{ instance_name: "", ac_store: "AC" }],
      bytestream: [{ instance_name: "", cas_store: "CAS", max_bytes_per_stream: MiB }],
    },
  });
  const client = new ByteStreamClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 4 * MiB,
  });
  try {
    const blobs = await Promise.all([
      patternBytes(9 * MiB + 123, 7),
      patternBytes(3 * MiB, 8), // a whole number of messages
      patternBytes(200_000, 9), // above the small-read shortcut, under one message
    ]);
    const digests: Digest[] = [];
    for (const b of blobs) {
      const d = digestOf(b);
      await putBytes(server.stores.get("CAS"), d, b);
      digests.push(d);
    }
    const name = (d: Digest) =>
      formatReadResourceName({ instanceName: "", compressor: "identity", digest: d });
    const [big, whole, small] = blobs as [Uint8Array, Uint8Array, Uint8Array];
    const [dBig, dWhole, dSmall] = digests as [Digest, Digest, Digest];

    // Several reads at once on one connection (their messages interleave on the corked socket).
    const results = await Promise.all([
      read(client, name(dBig)),
      read(client, name(dWhole)),
      read(client, name(dBig), MiB + 7, 3 * MiB + 1),
      read(client, name(dSmall)),
      read(client, name(dBig), big.byteLength - 5),
      read(client, name(dBig)),
    ]);
    assert.deepEqual(results.map((r) => r.sha256), [
      sha(big),
      sha(whole),
      sha(big.subarray(MiB + 7, 4 * MiB + 8)),
      sha(small),
      sha(big.subarray(big.byteLength - 5)),
      sha(big),
    ]);
    assert.ok(results.every((r) => r.largest <= MiB), "messages stay within max_bytes_per_stream");

    // A read abandoned half-way leaves the connection serving the next reads intact.
    await new Promise<void>((resolve) => {
      const call = client.read({ resourceName: name(dBig), readOffset: 0n, readLimit: 0n });
      let got = 0;
      call.on("data", (m: { data: Uint8Array }) => {
        got += m.data.byteLength;
        if (got >= 2 * MiB) call.cancel();
      });
      call.on("error", (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.CANCELLED);
        resolve();
      });
      call.on("end", resolve);
    });
    const again = await read(client, name(dBig), 5, 0);
    assert.equal(again.sha256, sha(big.subarray(5)));
    assert.equal(again.bytes, big.byteLength - 5);
  } finally {
    client.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
