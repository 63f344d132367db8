import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Digest, digestOf } from "../digest/digest.ts";
import {
  ActionResultSchema,
  DigestSchema,
  DirectorySchema,
  TreeSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { Code } from "../util/error.ts";
import { MAX_DECODED_MESSAGE_BYTES } from "../util/limits.ts";
import { createCompletenessCheckingStore } from "./completeness_checking_store.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { acKey, getBytes, has, putBytes } from "./helpers.ts";
import { createMemoryStore, type MemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";

const proto = (d: Digest) => create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
const text = (s: string) => new TextEncoder().encode(s);

async function putBlob(cas: MemoryStore, bytes: Uint8Array): Promise<Digest> {
  const d = digestOf(bytes);
  await putBytes(cas, d, bytes);
  return d;
}

/** An action result with one output file, stdout, and one output directory holding two files. */
async function fixture() {
  const cas = createMemoryStore();
  const ac = createMemoryStore();
  const store = createCompletenessCheckingStore(ac, cas);
  const out = await putBlob(cas, text("output file"));
  const stdout = await putBlob(cas, text("build log"));
  const inTree = await putBlob(cas, text("file inside tree"));
  const inChild = await putBlob(cas, text("file inside child dir"));
  const tree = create(TreeSchema, {
    root: create(DirectorySchema, { files: [{ name: "a", digest: proto(inTree) }] }),
    children: [create(DirectorySchema, { files: [{ name: "b", digest: proto(inChild) }] })],
  });
  const treeDigest = await putBlob(cas, toBinary(TreeSchema, tree));
  const result = create(ActionResultSchema, {
    outputFiles: [{ path: "out", digest: proto(out) }, {
      path: "empty",
      digest: proto(digestOf(new Uint8Array())),
    }],
    outputDirectories: [{ path: "dir", treeDigest: proto(treeDigest) }],
    stdoutDigest: proto(stdout),
  });
  const entry = toBinary(ActionResultSchema, result);
  const key = acKey(digestOf(text("action")));
  await store.write(key, new Blob([entry]).stream(), { max: 1 << 20 });
  return { cas, ac, store, key, entry, out, stdout, inTree, inChild, treeDigest };
}

// Only action-cache keys are checked: the suite's CAS digests and string keys pass through, and its AC-key
// cases store ActionResults without output digests (always complete).
runStoreConformance("completeness_checking", () =>
  Promise.resolve({
    store: createCompletenessCheckingStore(createMemoryStore(), createMemoryStore()),
    cleanup: async () => {},
  }));

Deno.test("completeness_checking passes string keys and CAS digests through unchecked", async () => {
  const { store, ac } = await fixture();
  // A record without a digest (such as the HTTP cache's size records) is not an ActionResult.
  await putBytes(store, "http-cas-size/abc", text("12345"));
  assert.equal(await has(store, "http-cas-size/abc"), 5);
  assert.deepEqual(await getBytes(store, "http-cas-size/abc", { maxSize: 100 }), text("12345"));
  const blob = text("not an action result \u00ff");
  await putBytes(store, digestOf(blob), blob);
  assert.deepEqual(await store.hasMany([digestOf(blob), "http-cas-size/abc"]), [blob.byteLength, 5]);
  assert.equal(await has(ac, digestOf(blob)), blob.byteLength);
  // The same bytes under an AC key are undecodable, so hidden.
  await putBytes(store, acKey(digestOf(blob)), blob);
  assert.equal(await has(store, acKey(digestOf(blob))), undefined);
  await assertRejectsWithCode(store.read(acKey(digestOf(blob))), Code.NotFound);
});

Deno.test("completeness_checking serves an entry whose outputs are all present", async () => {
  const { store, key, entry } = await fixture();
  assert.equal(await has(store, key), entry.byteLength);
  assert.deepEqual(await getBytes(store, key, { maxSize: 1 << 20 }), entry);
  assert.deepEqual(
    await getBytes(store, key, { maxSize: 1 << 20, offset: 2, length: 3 }),
    entry.subarray(2, 5),
  );
});

for (const missing of ["out", "stdout", "inTree", "inChild", "treeDigest"] as const) {
  Deno.test(`completeness_checking misses when the ${missing} blob is gone`, async () => {
    const f = await fixture();
    await f.cas.delete(f[missing]);
    assert.deepEqual(await f.store.hasMany([f.key]), [undefined]);
    await assertRejectsWithCode(f.store.read(f.key), Code.NotFound);
    assert.equal(await has(f.ac, f.key), f.entry.byteLength); // still stored underneath
  });
}

Deno.test("completeness_checking treats undecodable entries as absent and is built by the registry", async () => {
  const store = createStoreRegistry().build("ac", {
    completeness_checking: { backend: { memory: {} }, cas_store: { memory: {} } },
  });
  const key = acKey(digestOf(text("garbage")));
  await store.write(key, new Blob([new Uint8Array([0xff, 0xff, 0xff])]).stream(), { max: 10 });
  assert.equal(await has(store, key), undefined);
});

Deno.test("completeness_checking refuses a tree_digest above the message cap before reading it", async () => {
  const { cas, store } = await fixture();
  // The CAS claims to hold a blob larger than the cap; reading it would fail the test (the store is a stub).
  const huge: Digest = { hash: "ab".repeat(32), size: MAX_DECODED_MESSAGE_BYTES + 1 };
  const reads: string[] = [];
  const spy = {
    kind: "spy",
    hasMany: (keys: readonly Digest[]) => cas.hasMany(keys),
    read: (key: Digest) => {
      reads.push(key.hash);
      return cas.read(key);
    },
    write: cas.write.bind(cas),
  };
  const guarded = createCompletenessCheckingStore(store.inner, spy as never);
  const key = acKey(digestOf(text("huge tree action")));
  const entry = toBinary(
    ActionResultSchema,
    create(ActionResultSchema, {
      outputDirectories: Array.from({ length: 50 }, (_, i) => ({ path: `d${i}`, treeDigest: proto(huge) })),
    }),
  );
  await store.inner.write(key, new Blob([entry]).stream(), { max: 1 << 20 });
  const err = await assertRejectsWithCode(
    getBytes(guarded, key, { maxSize: 1 << 20 }),
    Code.ResourceExhausted,
  );
  assert.match(err.message, new RegExp(`${huge.hash}-${huge.size}.*limit of ${MAX_DECODED_MESSAGE_BYTES}`));
  await assertRejectsWithCode(guarded.hasMany([key]), Code.ResourceExhausted);
  assert.deepEqual(reads, []);
});
