import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  Compressor_Value,
  ContentAddressableStorage,
  DigestFunction_Value,
  type Directory,
  DirectorySchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Digest, digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { getBytes, has, putBytes } from "../store/helpers.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { Code } from "../util/error.ts";
import { createCasService, toProto } from "./cas_service.ts";
import { rejectsWithCode, serviceClient } from "../../tests/fixtures/service_testing.ts";
import { zstdCompress, zstdDecompress } from "./zstd_stream.ts";
import { patternBytes } from "../util/streams.ts";
import { MAX_DECODED_MESSAGE_BYTES } from "../util/limits.ts";

const enc = new TextEncoder();

function setup(maxBatchTotalSizeBytes?: number) {
  const casStore = createMemoryStore();
  const other = createMemoryStore();
  const impl = createCasService({
    instances: new Map([["", { casStore }], ["main", { casStore }], ["team/a", { casStore: other }]]),
    ...(maxBatchTotalSizeBytes === undefined ? {} : { maxBatchTotalSizeBytes }),
  });
  return { casStore, other, client: serviceClient(ContentAddressableStorage, impl) };
}

Deno.test("FindMissingBlobs reports absent blobs once and never the empty blob", async () => {
  const { casStore, client } = setup();
  const present = enc.encode("present");
  const pd = digestOf(present);
  await putBytes(casStore, pd, present);
  const absent = digestOf(enc.encode("absent"));
  const res = await client.findMissingBlobs({
    instanceName: "main",
    blobDigests: [toProto(pd), toProto(absent), toProto(EMPTY_DIGEST), toProto(absent)],
  });
  assert.deepEqual(res.missingBlobDigests.map((d) => d.hash), [absent.hash]);
});

Deno.test("Unknown instance names are refused with the known ones listed", async () => {
  const { client } = setup();
  const msg = await rejectsWithCode(client.findMissingBlobs({ instanceName: "nope" }), Code.InvalidArgument);
  assert.match(msg, /"nope".*"", "main", "team\/a"/);
});

Deno.test("Instances keep their own stores", async () => {
  const { client, other } = setup();
  const data = enc.encode("team a only");
  const d = digestOf(data);
  await client.batchUpdateBlobs({ instanceName: "team/a", requests: [{ digest: toProto(d), data }] });
  assert.equal(await has(other, d), data.byteLength);
  const res = await client.findMissingBlobs({ instanceName: "main", blobDigests: [toProto(d)] });
  assert.equal(res.missingBlobDigests.length, 1);
});

Deno.test("Unsupported digest functions are refused; SHA256 and UNKNOWN are served", async () => {
  const { client } = setup();
  await rejectsWithCode(
    client.findMissingBlobs({ digestFunction: DigestFunction_Value.BLAKE3 }),
    Code.InvalidArgument,
  );
  await client.findMissingBlobs({ digestFunction: DigestFunction_Value.SHA256 });
  await client.findMissingBlobs({ digestFunction: DigestFunction_Value.UNKNOWN });
});

Deno.test("BatchUpdateBlobs gives a status per blob and stores only correct blobs", async () => {
  const { casStore, client } = setup();
  const good = enc.encode("good blob");
  const bad = enc.encode("bad blob");
  const gd = digestOf(good);
  const wrong = digestOf(enc.encode("something else"));
  const res = await client.batchUpdateBlobs({
    requests: [
      { digest: toProto(gd), data: good },
      { digest: { hash: wrong.hash, sizeBytes: BigInt(bad.byteLength) }, data: bad },
      { digest: { hash: "xyz", sizeBytes: 1n }, data: new Uint8Array(1) },
    ],
  });
  assert.deepEqual(res.responses.map((r) => r.status?.code), [
    Code.Ok,
    Code.InvalidArgument,
    Code.InvalidArgument,
  ]);
  assert.match(res.responses[1]!.status!.message, /Hash mismatch/);
  assert.equal(await has(casStore, gd), good.byteLength);
  assert.equal(await has(casStore, { hash: wrong.hash, size: bad.byteLength }), undefined);
});

Deno.test("Batch requests above max_batch_total_size_bytes are INVALID_ARGUMENT", async () => {
  const { client } = setup(1000);
  const data = new Uint8Array(600);
  const d = digestOf(data);
  await rejectsWithCode(
    client.batchUpdateBlobs({ requests: [{ digest: toProto(d), data }, { digest: toProto(d), data }] }),
    Code.InvalidArgument,
  );
  await rejectsWithCode(client.batchReadBlobs({ digests: [toProto(d), toProto(d)] }), Code.InvalidArgument);
  const ok = await client.batchUpdateBlobs({ requests: [{ digest: toProto(d), data }] });
  assert.equal(ok.responses[0]!.status!.code, Code.Ok);
});

Deno.test("BatchReadBlobs returns data, NOT_FOUND per blob, and the empty blob even if never stored", async () => {
  const { casStore, client } = setup();
  const data = enc.encode("read me");
  const d = digestOf(data);
  await putBytes(casStore, d, data);
  const missing = digestOf(enc.encode("missing"));
  const res = await client.batchReadBlobs({ digests: [toProto(d), toProto(missing), toProto(EMPTY_DIGEST)] });
  assert.deepEqual(res.responses.map((r) => r.status?.code), [Code.Ok, Code.NotFound, Code.Ok]);
  assert.deepEqual(res.responses[0]!.data, data);
  assert.equal(res.responses[2]!.data.byteLength, 0);
});

Deno.test("Batch zstd: compressed uploads are decompressed and verified; reads compress when accepted", async () => {
  const { casStore, client } = setup();
  const data = enc.encode("zstd ".repeat(2000));
  const d = digestOf(data);
  const up = await client.batchUpdateBlobs({
    requests: [
      { digest: toProto(d), data: zstdCompress(data), compressor: Compressor_Value.ZSTD },
      {
        digest: toProto(digestOf(enc.encode("x"))),
        data: new Uint8Array([1, 2, 3]),
        compressor: Compressor_Value.ZSTD,
      },
    ],
  });
  assert.deepEqual(up.responses.map((r) => r.status?.code), [Code.Ok, Code.InvalidArgument]);
  assert.deepEqual(await getBytes(casStore, d, { maxSize: d.size }), data);
  const res = await client.batchReadBlobs({
    digests: [toProto(d)],
    acceptableCompressors: [Compressor_Value.ZSTD],
  });
  const r = res.responses[0]!;
  assert.equal(r.compressor, Compressor_Value.ZSTD);
  assert.ok(r.data.byteLength < data.byteLength);
  assert.deepEqual(zstdDecompress(r.data, d.size), data);
  const plain = await client.batchReadBlobs({ digests: [toProto(d)] });
  assert.equal(plain.responses[0]!.compressor, Compressor_Value.IDENTITY);
  assert.deepEqual(plain.responses[0]!.data, data);
});

/** Stores a directory and returns its digest. */
async function putDir(store: ReturnType<typeof createMemoryStore>, dir: Directory): Promise<Digest> {
  const bytes = toBinary(DirectorySchema, dir);
  const d = digestOf(bytes);
  await putBytes(store, d, bytes);
  return d;
}

async function collectTree(
  client: ReturnType<typeof setup>["client"],
  root: Digest,
  pageSize: number,
  pageToken = "",
) {
  const pages: { names: string[]; token: string }[] = [];
  for await (const res of client.getTree({ rootDigest: toProto(root), pageSize, pageToken })) {
    pages.push({
      names: res.directories.map((d) => d.files[0]?.name ?? "(root)"),
      token: res.nextPageToken,
    });
  }
  return pages;
}

Deno.test("GetTree pages through a deep tree (depth 50) and resumes from a page token", async () => {
  const { casStore, client } = setup();
  let child: Digest | undefined;
  for (let depth = 50; depth >= 1; depth--) {
    const dir = create(DirectorySchema, {
      files: [{ name: `level${depth}`, digest: toProto(EMPTY_DIGEST) }],
      directories: child ? [{ name: "sub", digest: toProto(child) }] : [],
    });
    child = await putDir(casStore, dir);
  }
  const pages = await collectTree(client, child!, 7);
  assert.equal(pages.length, 8);
  assert.deepEqual(pages.flatMap((p) => p.names), Array.from({ length: 50 }, (_, i) => `level${i + 1}`));
  assert.equal(pages.at(-1)!.token, "");
  const resumed = await collectTree(client, child!, 7, pages[2]!.token);
  assert.deepEqual(resumed.flatMap((p) => p.names), Array.from({ length: 29 }, (_, i) => `level${i + 22}`));
  await rejectsWithCode(collectTree(client, child!, 7, "garbage!"), Code.InvalidArgument);
});

Deno.test("GetTree covers a wide tree (1000 children), deduplicates, and omits missing children", async () => {
  const { casStore, client } = setup();
  const children: Digest[] = [];
  for (let i = 0; i < 1000; i++) {
    children.push(
      await putDir(
        casStore,
        create(DirectorySchema, { files: [{ name: `c${i}`, digest: toProto(EMPTY_DIGEST) }] }),
      ),
    );
  }
  const missing = digestOf(enc.encode("not a stored directory"));
  const root = await putDir(
    casStore,
    create(DirectorySchema, {
      files: [{ name: "root", digest: toProto(EMPTY_DIGEST) }],
      directories: [
        ...children.map((d, i) => ({ name: `d${i}`, digest: toProto(d) })),
        { name: "dup", digest: toProto(children[0]!) },
        { name: "gone", digest: toProto(missing) },
      ],
    }),
  );
  const pages = await collectTree(client, root, 300);
  const names = pages.flatMap((p) => p.names);
  assert.equal(names.length, 1001);
  assert.equal(new Set(names).size, 1001);
  assert.equal(pages.length, 4);
});

Deno.test("GetTree of an absent root is NOT_FOUND", async () => {
  const { client } = setup();
  await rejectsWithCode(collectTree(client, digestOf(enc.encode("nope")), 10), Code.NotFound);
});

Deno.test("A negative digest size is INVALID_ARGUMENT and cannot lower a batch's total below the limit", async () => {
  const { casStore, client } = setup(1000);
  const big = await patternBytes(5000, 3);
  const bd = digestOf(big);
  await putBytes(casStore, bd, big);
  const negative = { hash: bd.hash, sizeBytes: -5000n };
  // Without the check, 5000 + (-5000) = 0 passes the limit and the 5000-byte blob is served.
  await rejectsWithCode(
    client.batchReadBlobs({ digests: [toProto(bd), negative] }),
    Code.InvalidArgument,
  );
  const alone = await client.batchReadBlobs({ digests: [negative] });
  assert.equal(alone.responses[0]!.status!.code, Code.InvalidArgument);
  await rejectsWithCode(client.findMissingBlobs({ blobDigests: [negative] }), Code.InvalidArgument);
  await rejectsWithCode(collect(client.getTree({ rootDigest: negative })), Code.InvalidArgument);
  const upd = await client.batchUpdateBlobs({ requests: [{ digest: negative, data: new Uint8Array(0) }] });
  assert.equal(upd.responses[0]!.status!.code, Code.InvalidArgument);
});

Deno.test("BatchUpdateBlobs counts declared (decompressed) sizes against the batch limit before inflating", async () => {
  const { casStore, client } = setup(64 * 1024);
  const plain = new Uint8Array(1 << 20); // 1 MiB of zeros: a few hundred bytes of zstd
  const d = digestOf(plain);
  const packed = zstdCompress(plain);
  assert.ok(packed.byteLength < 64 * 1024);
  const msg = await rejectsWithCode(
    client.batchUpdateBlobs({
      requests: [{ digest: toProto(d), data: packed, compressor: Compressor_Value.ZSTD }],
    }),
    Code.InvalidArgument,
  );
  assert.match(msg, /declaring 1048576 bytes/);
  // A small declared size with a bomb behind it: inflating stops at the declared size.
  const small = digestOf(new Uint8Array(100));
  const res = await client.batchUpdateBlobs({
    requests: [{ digest: toProto(small), data: packed, compressor: Compressor_Value.ZSTD }],
  });
  assert.equal(res.responses[0]!.status!.code, Code.InvalidArgument);
  assert.equal(await has(casStore, small), undefined);
});

Deno.test("GetTree refuses a Directory larger than the message cap before reading it", async () => {
  const { casStore, client } = setup();
  const big = await patternBytes(MAX_DECODED_MESSAGE_BYTES + 1, 9);
  const d = digestOf(big);
  await putBytes(casStore, d, big);
  const msg = await rejectsWithCode(
    collect(client.getTree({ rootDigest: toProto(d) })),
    Code.ResourceExhausted,
  );
  assert.match(msg, new RegExp(`${d.hash}-${d.size}.*limit of ${MAX_DECODED_MESSAGE_BYTES}`));
});

Deno.test("Instance names longer than 1024 characters are INVALID_ARGUMENT with a short message", async () => {
  const { client } = setup();
  const msg = await rejectsWithCode(
    client.findMissingBlobs({ instanceName: "x".repeat(100_000) }),
    Code.InvalidArgument,
  );
  assert.ok(msg.length < 300, `message of ${msg.length} characters`);
  const unknown = await rejectsWithCode(
    client.findMissingBlobs({ instanceName: "y".repeat(1000) }),
    Code.InvalidArgument,
  );
  assert.ok(unknown.length < 400, `message of ${unknown.length} characters`);
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
