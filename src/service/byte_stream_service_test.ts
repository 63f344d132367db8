import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ByteStream, type WriteRequest } from "../gen/google/bytestream/bytestream_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WriteRequestSchema } from "../gen/google/bytestream/bytestream_pb.ts";
import { type Digest, digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { formatReadResourceName, formatWriteResourceName } from "../digest/resource_name.ts";
import { getBytes, has, putBytes } from "../store/helpers.ts";
import { createFilesystemStore } from "../store/filesystem_store.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import type { StoreDriver } from "../store/types.ts";
import { Code } from "../util/error.ts";
import { concatBytes, patternBytes } from "../util/streams.ts";
import { createByteStreamService } from "./byte_stream_service.ts";
import { rejectsWithCode, serviceClient } from "../../tests/fixtures/service_testing.ts";
import { zstdCompress, zstdDecompress } from "./zstd_stream.ts";
import { IoThread } from "../util/io_thread.ts";

type WriteInit = MessageInitShape<typeof WriteRequestSchema>;

function setup(casStore: StoreDriver = createMemoryStore(), maxBytesPerStream = 4096) {
  const impl = createByteStreamService({
    instances: new Map([["", { casStore, maxBytesPerStream }], ["a/b", { casStore, maxBytesPerStream }]]),
  });
  return { casStore, impl, client: serviceClient(ByteStream, impl) };
}

const readName = (d: Digest, compressor: "identity" | "zstd" = "identity", instanceName = "") =>
  formatReadResourceName({ instanceName, compressor, digest: d });
const writeName = (d: Digest, uuid: string, compressor: "identity" | "zstd" = "identity") =>
  formatWriteResourceName({ instanceName: "a/b", uuid, compressor, digest: d });

async function readAll(
  client: ReturnType<typeof setup>["client"],
  resourceName: string,
  readOffset = 0n,
  readLimit = 0n,
) {
  const chunks: Uint8Array[] = [];
  let messages = 0;
  for await (const r of client.read({ resourceName, readOffset, readLimit })) {
    chunks.push(r.data);
    messages++;
  }
  return { bytes: concatBytes(chunks), messages };
}

/** Write requests carrying `data` in `chunk`-sized pieces starting at `offset`. */
function writeRequests(
  name: string,
  data: Uint8Array,
  chunk: number,
  offset = 0,
  finish = true,
): WriteInit[] {
  const out: WriteInit[] = [];
  for (let pos = 0; pos < data.byteLength || out.length === 0; pos += chunk) {
    const part = data.subarray(pos, pos + chunk);
    out.push({
      resourceName: out.length === 0 ? name : "",
      writeOffset: BigInt(offset + pos),
      data: part,
      finishWrite: finish && pos + chunk >= data.byteLength,
    });
  }
  return out;
}

async function* stream(reqs: WriteInit[], failAfter?: number): AsyncGenerator<WriteInit> {
  let n = 0;
  for (const r of reqs) {
    if (failAfter !== undefined && n++ >= failAfter) throw new Error("client vanished");
    yield r;
  }
}

Deno.test("Read streams a blob in bounded messages and honours read_offset and read_limit", async () => {
  const { casStore, client } = setup();
  const data = await patternBytes(20_000, 3);
  const d = digestOf(data);
  await putBytes(casStore, d, data);
  const all = await readAll(client, readName(d));
  assert.deepEqual(all.bytes, data);
  assert.equal(all.messages, 5);
  assert.deepEqual(
    (await readAll(client, readName(d, "identity", "a/b"), 19_990n)).bytes,
    data.subarray(19_990),
  );
  assert.deepEqual((await readAll(client, readName(d), 100n, 50n)).bytes, data.subarray(100, 150));
  assert.equal((await readAll(client, readName(d), 20_000n)).bytes.byteLength, 0);
  await rejectsWithCode(readAll(client, readName(d), 20_001n), Code.OutOfRange);
  await rejectsWithCode(readAll(client, readName(d), -1n), Code.OutOfRange);
  await rejectsWithCode(readAll(client, readName(d), 0n, -1n), Code.InvalidArgument);
});

Deno.test("Read of an absent blob is NOT_FOUND; the empty blob always reads", async () => {
  const { client } = setup();
  await rejectsWithCode(readAll(client, readName(digestOf(new Uint8Array([9])))), Code.NotFound);
  assert.equal((await readAll(client, readName(EMPTY_DIGEST))).bytes.byteLength, 0);
  const z = await readAll(client, readName(EMPTY_DIGEST, "zstd"));
  assert.equal(zstdDecompress(z.bytes, 0).byteLength, 0);
  await rejectsWithCode(readAll(client, "not/a/resource"), Code.InvalidArgument);
  await rejectsWithCode(readAll(client, readName(EMPTY_DIGEST, "identity", "unknown")), Code.InvalidArgument);
});

Deno.test("Write stores a blob streamed in many messages and reports committed_size", async () => {
  const { casStore, client, impl } = setup();
  const data = await patternBytes(100_000, 5);
  const d = digestOf(data);
  const res = await client.write(stream(writeRequests(writeName(d, "u1"), data, 7000)));
  assert.equal(res.committedSize, 100_000n);
  assert.deepEqual(await getBytes(casStore, d, { maxSize: d.size }), data);
  assert.equal(impl.activeUploads, 0);
});

Deno.test("Write with a wrong hash is INVALID_ARGUMENT and stores nothing", async () => {
  const { casStore, client, impl } = setup();
  const data = await patternBytes(30_000, 6);
  const lie: Digest = { hash: digestOf(new Uint8Array([1])).hash, size: data.byteLength };
  const msg = await rejectsWithCode(
    client.write(stream(writeRequests(writeName(lie, "u2"), data, 4096))),
    Code.InvalidArgument,
  );
  assert.match(msg, /Hash mismatch/);
  assert.equal(await has(casStore, lie), undefined);
  assert.equal(impl.activeUploads, 0);
  // Too many bytes for the digest's size fails as well.
  const short: Digest = { hash: digestOf(data).hash, size: 10 };
  await rejectsWithCode(
    client.write(stream(writeRequests(writeName(short, "u3"), data, 4096))),
    Code.InvalidArgument,
  );
  assert.equal(await has(casStore, short), undefined);
});

Deno.test("Write of an existing blob short-circuits with committed_size (or -1 when compressed)", async () => {
  const { casStore, client } = setup();
  const data = await patternBytes(10_000, 7);
  const d = digestOf(data);
  await putBytes(casStore, d, data);
  const first = writeRequests(writeName(d, "u4"), data, 1000);
  assert.equal((await client.write(stream(first))).committedSize, 10_000n);
  const z = writeRequests(writeName(d, "u5", "zstd"), zstdCompress(data), 1000);
  assert.equal((await client.write(stream(z))).committedSize, -1n);
  const empty = writeRequests(writeName(EMPTY_DIGEST, "u6"), new Uint8Array(0), 1);
  assert.equal((await client.write(stream(empty))).committedSize, 0n);
});

Deno.test("An interrupted Write resumes at QueryWriteStatus's committed_size", async () => {
  const { casStore, client, impl } = setup();
  const data = await patternBytes(50_000, 8);
  const d = digestOf(data);
  const name = writeName(d, "resume-me");
  const reqs = writeRequests(name, data, 5000);
  assert.match(await rejectsWithCode(client.write(stream(reqs, 4)), Code.Internal), /client vanished/);
  let status = await client.queryWriteStatus({ resourceName: name });
  for (let i = 0; i < 3000 && status.committedSize !== 20_000n; i++) {
    await new Promise((r) => setTimeout(r, 10));
    status = await client.queryWriteStatus({ resourceName: name });
  }
  assert.equal(status.committedSize, 20_000n);
  assert.equal(status.complete, false);
  assert.equal(await has(casStore, d), undefined);
  // Skipping ahead is refused and keeps the upload resumable.
  await rejectsWithCode(
    client.write(stream(writeRequests(name, data.subarray(25_000), 5000, 25_000))),
    Code.InvalidArgument,
  );
  const rest = writeRequests(name, data.subarray(20_000), 5000, 20_000);
  assert.equal((await client.write(stream(rest))).committedSize, 50_000n);
  assert.deepEqual(await getBytes(casStore, d, { maxSize: d.size }), data);
  const done = await client.queryWriteStatus({ resourceName: name });
  assert.deepEqual([done.committedSize, done.complete], [50_000n, true]);
  assert.equal(impl.activeUploads, 0);
});

Deno.test("write_offset without an upload in progress, or changing mid-stream, is INVALID_ARGUMENT", async () => {
  const { client, impl } = setup();
  const data = await patternBytes(8000, 9);
  const d = digestOf(data);
  await rejectsWithCode(
    client.write(stream(writeRequests(writeName(d, "x1"), data.subarray(100), 1000, 100))),
    Code.InvalidArgument,
  );
  const reqs = writeRequests(writeName(d, "x2"), data, 1000);
  reqs[2] = { ...reqs[2]!, writeOffset: 5000n } as WriteRequest;
  await rejectsWithCode(client.write(stream(reqs)), Code.InvalidArgument);
  impl.close();
  assert.equal(impl.activeUploads, 0);
});

Deno.test("A vanished client leaves nothing stored once the upload expires", async () => {
  const casStore = createMemoryStore();
  const impl = createByteStreamService({
    instances: new Map([["", { casStore, persistStreamOnDisconnectTimeoutS: 0.05 }]]),
  });
  const client = serviceClient(ByteStream, impl);
  const data = await patternBytes(40_000, 10);
  const d = digestOf(data);
  const name = formatWriteResourceName({ instanceName: "", uuid: "gone", compressor: "identity", digest: d });
  assert.match(
    await rejectsWithCode(client.write(stream(writeRequests(name, data, 4000), 3)), Code.Internal),
    /client vanished/,
  );
  for (let i = 0; i < 1500 && impl.activeUploads > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(impl.activeUploads, 0);
  assert.equal(await has(casStore, d), undefined);
  const status = await client.queryWriteStatus({ resourceName: name });
  assert.deepEqual([status.committedSize, status.complete], [0n, false]);
});

Deno.test("zstd Write and Read round-trip; a corrupt or lying compressed upload is refused", async () => {
  const { casStore, client } = setup();
  const data = concatBytes([await patternBytes(30_000, 11), new Uint8Array(70_000)]);
  const d = digestOf(data);
  const packed = zstdCompress(data);
  const res = await client.write(stream(writeRequests(writeName(d, "z1", "zstd"), packed, 3000)));
  assert.equal(res.committedSize, BigInt(packed.byteLength));
  assert.deepEqual(await getBytes(casStore, d, { maxSize: d.size }), data);
  const back = await readAll(client, readName(d, "zstd"));
  assert.deepEqual(zstdDecompress(back.bytes, d.size), data);
  const tail = await readAll(client, readName(d, "zstd"), 90_000n);
  assert.deepEqual(zstdDecompress(tail.bytes, d.size), data.subarray(90_000));
  await rejectsWithCode(readAll(client, readName(d, "zstd"), 0n, 10n), Code.InvalidArgument);

  const other = new Uint8Array(5000).fill(7);
  const od = digestOf(other);
  await rejectsWithCode(
    client.write(stream(writeRequests(writeName(od, "z2", "zstd"), new Uint8Array(100).fill(3), 50))),
    Code.InvalidArgument,
  );
  const bomb: Digest = { hash: od.hash, size: 10 };
  await rejectsWithCode(
    client.write(stream(writeRequests(writeName(bomb, "z3", "zstd"), zstdCompress(other), 50))),
    Code.InvalidArgument,
  );
  assert.equal(await has(casStore, od), undefined);
});

Deno.test("ByteStream on a filesystem store: resume, ranged read, and a wrong hash stores nothing", async () => {
  const dir = await Deno.makeTempDir();
  const casStore = createFilesystemStore({ contentPath: `${dir}/content`, tempPath: `${dir}/tmp` });
  await casStore.init?.();
  const { client, impl } = setup(casStore);
  try {
    const data = await patternBytes(120_000, 12);
    const d = digestOf(data);
    const name = writeName(d, "fs-1");
    assert.match(
      await rejectsWithCode(client.write(stream(writeRequests(name, data, 10_000), 5)), Code.Internal),
      /client vanished/,
    );
    let status = await client.queryWriteStatus({ resourceName: name });
    for (let i = 0; i < 3000 && status.committedSize !== 50_000n; i++) {
      await new Promise((r) => setTimeout(r, 10));
      status = await client.queryWriteStatus({ resourceName: name });
    }
    assert.equal(status.committedSize, 50_000n);
    const rest = writeRequests(name, data.subarray(50_000), 10_000, 50_000);
    assert.equal((await client.write(stream(rest))).committedSize, 120_000n);
    assert.deepEqual(
      (await readAll(client, readName(d, "identity", "a/b"), 1000n, 5n)).bytes,
      data.subarray(1000, 1005),
    );

    const lie: Digest = { hash: digestOf(new Uint8Array([2])).hash, size: data.byteLength };
    await rejectsWithCode(
      client.write(stream(writeRequests(writeName(lie, "fs-2"), data, 30_000))),
      Code.InvalidArgument,
    );
    assert.equal(await has(casStore, lie), undefined);
  } finally {
    impl.close();
    await casStore.close?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Large uploads (hashed and written off the main thread) commit only when the hash matches", async () => {
  const dir = await Deno.makeTempDir();
  const casStore = createFilesystemStore({ contentPath: `${dir}/content`, tempPath: `${dir}/tmp` });
  await casStore.init?.();
  const { client, impl } = setup(casStore);
  try {
    const data = await patternBytes((6 << 20) + 333, 21);
    const d = digestOf(data);
    assert.equal(
      (await client.write(stream(writeRequests(writeName(d, "big-1"), data, 256 * 1024)))).committedSize,
      BigInt(data.byteLength),
    );
    assert.ok(Buffer.compare(await getBytes(casStore, d, { maxSize: d.size }), data) === 0);

    // The same bytes under a digest whose hash is wrong (one byte flipped in the claimed hash).
    const flipped = (d.hash[0] === "0" ? "1" : "0") + d.hash.slice(1);
    const lie: Digest = { hash: flipped, size: data.byteLength };
    const msg = await rejectsWithCode(
      client.write(stream(writeRequests(writeName(lie, "big-2"), data, 1 << 20))),
      Code.InvalidArgument,
    );
    assert.match(msg, /Hash mismatch/);
    assert.equal(await has(casStore, lie), undefined);
    assert.deepEqual([...Deno.readDirSync(`${dir}/tmp`)], [], "no temp file is left behind");

    // A client that vanishes mid-upload leaves nothing once its upload is dropped.
    const other = await patternBytes(5 << 20, 22);
    const od = digestOf(other);
    assert.match(
      await rejectsWithCode(
        client.write(stream(writeRequests(writeName(od, "big-3"), other, 1 << 20), 2)),
        Code.Internal,
      ),
      /client vanished/,
    );
    impl.close();
    assert.equal(await has(casStore, od), undefined);
    for (let i = 0; i < 3000 && [...Deno.readDirSync(`${dir}/tmp`)].length > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual([...Deno.readDirSync(`${dir}/tmp`)], []);
  } finally {
    impl.close();
    await casStore.close?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("One injected I/O thread serves the service and the store, and neither stops it", async () => {
  class CountingThread extends IoThread {
    opens = 0;
    hashers = 0;
    closes = 0;
    override open(path: string, mode: number) {
      this.opens++;
      return super.open(path, mode);
    }
    override hasher() {
      this.hashers++;
      return super.hasher();
    }
    override close() {
      this.closes++;
      super.close();
    }
  }
  const thread = new CountingThread();
  const dir = await Deno.makeTempDir();
  const casStore = createFilesystemStore({
    contentPath: `${dir}/content`,
    tempPath: `${dir}/tmp`,
    ioThread: thread,
  });
  await casStore.init?.();
  const impl = createByteStreamService({ instances: new Map([["a/b", { casStore }]]), ioThread: thread });
  const client = serviceClient(ByteStream, impl);
  try {
    const data = await patternBytes((6 << 20) + 7, 23);
    const d = digestOf(data);
    assert.equal(
      (await client.write(stream(writeRequests(writeName(d, "shared-1"), data, 1 << 20)))).committedSize,
      BigInt(data.byteLength),
    );
    assert.equal(thread.hashers, 1, "the service hashed the upload on the injected thread");
    assert.equal(thread.opens, 1, "the store wrote the upload on the injected thread");
    impl.close();
    await casStore.close?.();
    assert.equal(thread.closes, 0, "the owner of the thread stops it, not its users");
  } finally {
    impl.close();
    await casStore.close?.();
    thread.close();
    await Deno.remove(dir, { recursive: true });
  }
});
