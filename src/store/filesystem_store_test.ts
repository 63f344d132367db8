import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { digestOf, formatDigest } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { createFilesystemStore, type FilesystemStoreOptions } from "./filesystem_store.ts";
import { acKey, getBytes, has, keyToString, putBytes } from "./helpers.ts";
import { createStoreRegistry } from "./registry.ts";

async function tempStore(options: Partial<FilesystemStoreOptions> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "cairn-fs-" });
  const open = (more: Partial<FilesystemStoreOptions> = {}) =>
    createFilesystemStore({ contentPath: `${dir}/content`, tempPath: `${dir}/tmp`, ...options, ...more });
  return { dir, open, remove: () => Deno.remove(dir, { recursive: true }) };
}

/** A started store in a fresh directory, for the conformance suite. */
async function storeUnderTest(options: Partial<FilesystemStoreOptions> = {}) {
  const t = await tempStore(options);
  const store = t.open();
  await store.init();
  return {
    store,
    cleanup: async () => {
      await store.close();
      await t.remove();
    },
  };
}

runStoreConformance("filesystem", () => storeUnderTest());
// Every write through the worker thread (by default only network uploads of 4 MiB and more go there).
runStoreConformance("filesystem (thread writes)", () => storeUnderTest({ threadWritesAlways: true }));

const blob = (i: number, size = 100) => {
  const b = new Uint8Array(size);
  b.fill(i);
  return { bytes: b, digest: digestOf(b) };
};

Deno.test("filesystem: max_bytes evicts least recently used down to the evict_bytes watermark", async () => {
  const t = await tempStore({
    blockSize: 1,
    evictionPolicy: { maxBytes: 1000, evictBytes: 300, maxSeconds: 0, maxCount: 0 },
  });
  const store = t.open();
  try {
    const blobs = Array.from({ length: 10 }, (_, i) => blob(i));
    for (const b of blobs) await putBytes(store, b.digest, b.bytes);
    await (await store.read(blobs[0]!.digest)).cancel();
    const extra = blob(50);
    await putBytes(store, extra.digest, extra.bytes);
    assert.equal(store.bytes, 700);
    assert.deepEqual(
      await store.hasMany(blobs.map((b) => b.digest)),
      [100, undefined, undefined, undefined, undefined, 100, 100, 100, 100, 100],
    );
    await store.close(); // waits for the unlinks
    // Evicted files are gone from disk.
    for (const b of blobs.slice(1, 5)) {
      await assert.rejects(Deno.stat(store.pathOf(b.digest)), Deno.errors.NotFound);
    }
    await Deno.stat(store.pathOf(blobs[0]!.digest));
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: max_count and block_size accounting", async () => {
  const t = await tempStore({ evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 0, maxCount: 3 } });
  const store = t.open();
  try {
    const blobs = Array.from({ length: 5 }, (_, i) => blob(i, 10));
    for (const b of blobs) await putBytes(store, b.digest, b.bytes);
    assert.deepEqual(await store.hasMany(blobs.map((b) => b.digest)), [undefined, undefined, 10, 10, 10]);
    assert.equal(store.bytes, 3 * 4096, "each 10-byte file counts one 4 KiB block");
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: a key found by hasMany counts as used and is evicted last", async () => {
  const t = await tempStore({ evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 0, maxCount: 3 } });
  const store = t.open();
  try {
    const blobs = Array.from({ length: 4 }, (_, i) => blob(i, 10));
    for (const b of blobs.slice(0, 3)) await putBytes(store, b.digest, b.bytes);
    assert.deepEqual(await store.hasMany([blobs[0]!.digest]), [10]);
    await putBytes(store, blobs[3]!.digest, blobs[3]!.bytes);
    assert.deepEqual(await store.hasMany(blobs.map((b) => b.digest)), [10, undefined, 10, 10]);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: max_seconds expires entries not read for that long", async () => {
  let now = Date.now();
  const t = await tempStore({
    evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 10, maxCount: 0 },
    now: () => now,
  });
  const store = t.open();
  try {
    const a = blob(1);
    const b = blob(2);
    await putBytes(store, a.digest, a.bytes);
    now += 6_000;
    await putBytes(store, b.digest, b.bytes);
    now += 6_000;
    assert.deepEqual(await store.hasMany([a.digest, b.digest]), [undefined, 100]);
    await (await store.read(b.digest)).cancel();
    now += 8_000;
    assert.equal(await has(store, b.digest), 100); // found: counts as used, refreshes b again
    now += 11_000;
    assert.equal(await has(store, b.digest), undefined);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: restart rebuilds sizes and access order, and empties temp_path", async () => {
  let now = Date.now() - 100_000;
  const t = await tempStore({ now: () => now });
  const first = t.open();
  const blobs = Array.from({ length: 6 }, (_, i) => blob(i, 1000 + i));
  for (const b of blobs) {
    await putBytes(first, b.digest, b.bytes);
    now += 1000;
  }
  await putBytes(first, "named/key", new TextEncoder().encode("value"));
  // Reading blob 0 makes it the most recently used, also on disk (mtime).
  now += 1000;
  await getBytes(first, blobs[0]!.digest, { maxSize: 1 << 20 });
  await first.close();
  // Leftovers of a crashed writer, and junk in content_path.
  await Deno.writeFile(`${t.dir}/tmp/half-written`, new Uint8Array(123));
  await Deno.writeFile(`${t.dir}/content/d/00/not-a-digest`, new Uint8Array(1));
  const wrongSize = blob(99, 50);
  const wrongPath = first.pathOf(wrongSize.digest);
  await Deno.writeFile(wrongPath, new Uint8Array(49));

  // Restart with a count limit: the least recently used go first.
  const second = t.open({
    evictionPolicy: { maxBytes: 0, evictBytes: 0, maxSeconds: 0, maxCount: 4 },
    now: Date.now,
  });
  try {
    await second.init();
    assert.deepEqual([...Deno.readDirSync(`${t.dir}/tmp`)], [], "temp_path is emptied");
    await assert.rejects(Deno.stat(wrongPath), Deno.errors.NotFound, "a file of the wrong size is removed");
    await assert.rejects(Deno.stat(`${t.dir}/content/d/00/not-a-digest`), Deno.errors.NotFound);
    // Order was 1,2,3,4,5,named,0 → keep the newest four: 4,5,named,0.
    assert.deepEqual(
      await second.hasMany(blobs.map((b) => b.digest)),
      [1000, undefined, undefined, undefined, 1004, 1005],
    );
    assert.deepEqual(
      await getBytes(second, "named/key", { maxSize: 100 }),
      new TextEncoder().encode("value"),
    );
    const listed = [];
    for await (const k of second.list()) listed.push(keyToString(k));
    assert.equal(listed.length, 4);
    assert.ok(listed.includes("named/key"));
  } finally {
    await second.close();
    await t.remove();
  }
});

Deno.test("filesystem: after a restart, digests are listed from the index and a hashed-name key is still served", async () => {
  const t = await tempStore();
  const first = t.open();
  const blobs = Array.from({ length: 3 }, (_, i) => blob(i, 10 + i));
  for (const b of blobs) await putBytes(first, b.digest, b.bytes);
  // A key too long for a file name is stored under a hash of it: the key itself is not known after a restart.
  const longKey = `long/${"k".repeat(400)}`;
  await putBytes(first, longKey, new TextEncoder().encode("long value"));
  const listedBefore = [];
  for await (const k of first.list()) listedBefore.push(keyToString(k));
  assert.ok(listedBefore.includes(longKey));
  await first.close();
  const second = t.open();
  try {
    await second.init();
    const listed = [];
    for await (const k of second.list()) listed.push(k);
    assert.deepEqual(
      listed.filter((k) => typeof k !== "string").map((k) => keyToString(k)).sort(),
      blobs.map((b) => keyToString(b.digest)).sort(),
    );
    assert.deepEqual(
      await getBytes(second, longKey, { maxSize: 100 }),
      new TextEncoder().encode("long value"),
    );
    for (const b of blobs) assert.deepEqual(await getBytes(second, b.digest, { maxSize: 100 }), b.bytes);
    assert.ok(await second.delete(blobs[0]!.digest));
    await assert.rejects(Deno.stat(second.pathOf(blobs[0]!.digest)), Deno.errors.NotFound);
  } finally {
    await second.close();
    await t.remove();
  }
});

Deno.test("filesystem: a file whose size disagrees with its name is removed and NOT_FOUND", async () => {
  const t = await tempStore();
  const store = t.open();
  try {
    const b = blob(7, 5000);
    await putBytes(store, b.digest, b.bytes);
    const path = store.pathOf(b.digest);
    await Deno.chmod(path, 0o644);
    await Deno.truncate(path, 100);
    await assertRejectsWithCode(store.read(b.digest), Code.NotFound);
    assert.equal(await has(store, b.digest), undefined);
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: a file deleted behind the store's back is NOT_FOUND, not an I/O error", async () => {
  const t = await tempStore();
  const store = t.open();
  try {
    const b = blob(8, 500);
    await putBytes(store, b.digest, b.bytes);
    await Deno.remove(store.pathOf(b.digest));
    await assertRejectsWithCode(store.read(b.digest), Code.NotFound);
    assert.equal(await has(store, b.digest), undefined);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: pathOf names a read-only file holding the blob", async () => {
  const t = await tempStore();
  const store = t.open();
  try {
    const b = blob(3, 4321);
    await putBytes(store, b.digest, b.bytes);
    const path = store.pathOf(b.digest);
    assert.ok(path.endsWith(`/${formatDigest(b.digest)}`));
    assert.deepEqual(await Deno.readFile(path), b.bytes);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o444);
    // A reader holding the file keeps its bytes even if the blob is deleted meanwhile.
    const stream = await store.read(b.digest);
    assert.equal(await store.delete(b.digest), true);
    const got = new Uint8Array(await new Response(stream).arrayBuffer());
    assert.deepEqual(got, b.bytes);
    assert.equal(await store.delete(b.digest), false);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: eviction while readers hold files never breaks a started read", async () => {
  const t = await tempStore({
    blockSize: 1,
    evictionPolicy: { maxBytes: 300_000, evictBytes: 0, maxSeconds: 0, maxCount: 0 },
  });
  const store = t.open({ readBufferSize: 4096 });
  try {
    const blobs = Array.from({ length: 12 }, (_, i) => blob(i, 100_000));
    const reads: Promise<void>[] = [];
    for (const b of blobs) {
      await putBytes(store, b.digest, b.bytes);
      try {
        const stream = await store.read(b.digest);
        reads.push(
          new Response(stream).arrayBuffer().then((buf) => assert.deepEqual(new Uint8Array(buf), b.bytes)),
        );
      } catch (err) {
        // Evicted before we opened it: must be NOT_FOUND.
        await assertRejectsWithCode(Promise.reject(err), Code.NotFound);
      }
    }
    await Promise.all(reads);
    assert.ok(store.bytes <= 300_000);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: registry reads NativeLink fields and reports config errors", async () => {
  const registry = createStoreRegistry();
  assert.throws(
    () => registry.build("cas", { filesystem: { temp_path: "/tmp/x" } }),
    /^CairnError: Cannot open store "cas": content_path is missing$/m,
  );
  assert.throws(
    () => registry.build("cas", { filesystem: { content_path: "/a", temp_path: "/a/" } }),
    /content_path and temp_path must be different/,
  );
  assert.throws(
    () =>
      registry.build("cas", { filesystem: { content_path: "/a", temp_path: "/b", read_buffer_size: "1k" } }),
    /read_buffer_size must be a non-negative number/,
  );
  const dir = await Deno.makeTempDir();
  const store = registry.build("cas", {
    filesystem: {
      content_path: `${dir}/c`,
      temp_path: `${dir}/t`,
      eviction_policy: { max_bytes: 10_000_000 },
    },
  });
  try {
    await putBytes(store, "k", new Uint8Array(3));
    assert.equal(await has(store, "k"), 3);
  } finally {
    await store.close?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("filesystem: bytes stored under a digest with {max} (transformed content) survive a restart", async () => {
  const t = await tempStore();
  const d = { hash: "c".repeat(64), size: 1_000_000 };
  const compressed = new Uint8Array(1234).fill(5);
  const first = t.open();
  await first.write(d, new Blob([compressed]).stream(), { max: 2_000_000 });
  assert.equal(await has(first, d), 1234);
  assert.deepEqual(await getBytes(first, d, { maxSize: 2_000_000 }), compressed);
  await first.close();
  const second = t.open();
  try {
    assert.equal(await has(second, d), 1234);
    assert.deepEqual(await getBytes(second, d, { maxSize: 2_000_000 }), compressed);
    // Rewriting it with the exact bytes replaces the transformed file.
    const raw = new Uint8Array(1_000_000);
    await second.write(d, new Blob([raw]).stream(), { exact: 1_000_000 });
    assert.equal(await has(second, d), 1_000_000);
    const names = [...Deno.readDirSync(`${t.dir}/content/d/cc`)].map((e) => e.name);
    assert.deepEqual(names, [`${"c".repeat(64)}-1000000`]);
  } finally {
    await second.close();
    await t.remove();
  }
});

Deno.test("filesystem: BYOB readers get range reads straight into their own buffer", async () => {
  const t = await tempStore();
  const store = t.open({ readBufferSize: 64 * 1024 });
  try {
    const bytes = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    const reader = (await store.read(d, { offset: 1000, length: 200_000 })).getReader({ mode: "byob" });
    const got = new Uint8Array(200_000);
    let filled = 0;
    let buf = new Uint8Array(50_000);
    for (;;) {
      const { done, value } = await reader.read(buf);
      if (done) break;
      got.set(value, filled);
      filled += value.byteLength;
      buf = new Uint8Array(value.buffer);
    }
    assert.equal(filled, 200_000);
    assert.deepEqual(got, bytes.subarray(1000, 201_000));
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: action-cache entries survive a restart under the file name earlier versions used", async () => {
  const t = await tempStore();
  const action = blob(40, 321).digest;
  const key = acKey(action);
  const result = new TextEncoder().encode("an ActionResult, not 321 bytes long");
  // Written by an earlier version: the AC's string key `hash-size`, base64url-encoded under s/=.
  const legacyAction = blob(41, 77).digest;
  const legacyName = `=${Buffer.from(formatDigest(legacyAction)).toString("base64url")}`;
  const legacy = new TextEncoder().encode("stored before the upgrade");
  await Deno.mkdir(`${t.dir}/content/s`, { recursive: true });
  await Deno.writeFile(`${t.dir}/content/s/${legacyName}`, legacy);
  const first = t.open();
  try {
    assert.deepEqual(await getBytes(first, acKey(legacyAction), { maxSize: 100 }), legacy);
    await putBytes(first, key, result);
    // A string that reads like an AC entry's name is another record, in another file.
    await putBytes(first, formatDigest(action), new TextEncoder().encode("plain"));
    // The action's CAS blob is a third, separate file.
    await putBytes(first, action, blob(40, 321).bytes);
  } finally {
    await first.close();
  }
  const names = [...Deno.readDirSync(`${t.dir}/content/s`)].map((e) => e.name).sort();
  assert.deepEqual(
    names,
    [
      `+${Buffer.from(formatDigest(action)).toString("base64url")}`,
      `=${Buffer.from(formatDigest(action)).toString("base64url")}`,
      legacyName,
    ].sort(),
  );
  const second = t.open();
  try {
    assert.deepEqual(await second.hasMany([key, acKey(legacyAction), action, formatDigest(action)]), [
      result.byteLength,
      legacy.byteLength,
      321,
      5,
    ]);
    assert.deepEqual(await getBytes(second, key, { maxSize: 100 }), result);
    assert.deepEqual(await getBytes(second, acKey(legacyAction), { maxSize: 100 }), legacy);
    assert.deepEqual(
      await getBytes(second, formatDigest(action), { maxSize: 100 }),
      new TextEncoder().encode("plain"),
    );
    assert.equal(await has(second, formatDigest(legacyAction)), undefined);
    const listed = [];
    for await (const k of second.list()) listed.push(keyToString(k));
    assert.deepEqual(
      listed.sort(),
      [
        formatDigest(action),
        formatDigest(action),
        `ac:${formatDigest(action)}`,
        `ac:${formatDigest(legacyAction)}`,
      ].sort(),
    );
    assert.ok(await second.delete(key));
    assert.equal(await has(second, key), undefined);
    assert.equal(await has(second, action), 321);
  } finally {
    await second.close();
    await t.remove();
  }
});

Deno.test("filesystem: readBytes serves exact bytes and ranges of small and large values", async () => {
  const t = await tempStore();
  const store = t.open();
  try {
    for (const size of [1, 100, 64 << 10, (64 << 10) + 1, 300_000]) {
      const bytes = new Uint8Array(size).map((_, i) => (i * 7 + size) & 0xff);
      const d = digestOf(bytes);
      const ac = acKey(digestOf(new Uint8Array([size & 0xff, size >> 8, 1])));
      const named = `named/${size}`;
      for (const key of [d, ac, named]) {
        await putBytes(store, key, bytes);
        assert.deepEqual(await store.readBytes(key, { maxSize: size }), bytes, `whole ${keyToString(key)}`);
        const off = Math.floor(size / 3);
        assert.deepEqual(
          await store.readBytes(key, { maxSize: size, offset: off, length: 50 }),
          bytes.subarray(off, off + 50),
        );
        assert.deepEqual(await store.readBytes(key, { maxSize: size, offset: off }), bytes.subarray(off));
        assert.equal((await store.readBytes(key, { maxSize: 0, offset: size })).byteLength, 0);
        const past = await assertRejectsWithCode(
          store.readBytes(key, { maxSize: size, offset: size + 1 }),
          Code.OutOfRange,
        );
        assert.match(past.message, new RegExp(`offset ${size + 1}: it has only ${size} bytes`));
        const big = await assertRejectsWithCode(
          store.readBytes(key, { maxSize: size - 1 }),
          Code.ResourceExhausted,
        );
        assert.match(big.message, new RegExp(`${size} bytes exceeds the limit of ${size - 1}`));
        // A range within maxSize of a value larger than maxSize is fine.
        assert.deepEqual(
          await store.readBytes(key, { maxSize: 1, offset: size - 1 }),
          bytes.subarray(size - 1),
        );
      }
    }
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: readBytes misses are NOT_FOUND from the index; a vanished or cut file is NOT_FOUND and dropped", async () => {
  const t = await tempStore();
  const store = t.open();
  try {
    const absent = blob(40, 10);
    await assertRejectsWithCode(store.readBytes(absent.digest, { maxSize: 100 }), Code.NotFound);
    await assertRejectsWithCode(store.readBytes(acKey(absent.digest), { maxSize: 100 }), Code.NotFound);
    await assertRejectsWithCode(store.readBytes("no/such/key", { maxSize: 100 }), Code.NotFound);

    const gone = blob(41, 500);
    await putBytes(store, gone.digest, gone.bytes);
    await Deno.remove(store.pathOf(gone.digest));
    await assertRejectsWithCode(store.readBytes(gone.digest, { maxSize: 1000 }), Code.NotFound);
    assert.equal(await has(store, gone.digest), undefined);

    // An AC entry whose file was replaced by one of another size (as a rewrite racing the index): the file's bytes.
    const ac = acKey(blob(45, 10).digest);
    await putBytes(store, ac, new TextEncoder().encode("short"));
    const [acFile] = [...Deno.readDirSync(`${t.dir}/content/s`)].map((e) => `${t.dir}/content/s/${e.name}`);
    const longer = new TextEncoder().encode("a longer action result than before");
    await Deno.remove(acFile!);
    await Deno.writeFile(acFile!, longer);
    assert.deepEqual(await store.readBytes(ac, { maxSize: 100 }), longer);
    await assertRejectsWithCode(store.readBytes(ac, { maxSize: 10 }), Code.ResourceExhausted);

    const cut = blob(42, 5000);
    await putBytes(store, cut.digest, cut.bytes);
    const path = store.pathOf(cut.digest);
    await Deno.chmod(path, 0o644);
    await Deno.truncate(path, 100);
    const err = await assertRejectsWithCode(store.readBytes(cut.digest, { maxSize: 5000 }), Code.NotFound);
    assert.match(err.message, /has 100 bytes, so it was removed/);
    assert.equal(await has(store, cut.digest), undefined);
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  } finally {
    await store.close();
    await t.remove();
  }
});

Deno.test("filesystem: readBytes never serves a half-written temp file, and an AC entry being rewritten stays whole", async () => {
  const t = await tempStore();
  const store = t.open();
  try {
    const b = blob(43, 1000);
    const ac = acKey(blob(44, 10).digest);
    const old = new TextEncoder().encode("the old action result");
    await putBytes(store, ac, old);
    // Two uploads that deliver half their bytes, then wait for `release` (the rest, or undefined: an error).
    const halfThenWait = (bytes: Uint8Array) => {
      let step = 0;
      let release!: (chunk: Uint8Array | undefined) => void;
      const rest = new Promise<Uint8Array | undefined>((resolve) => (release = resolve));
      let announce!: () => void;
      const started = new Promise<void>((resolve) => (announce = resolve));
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (step++ === 0) {
            c.enqueue(bytes.slice(0, bytes.byteLength >> 1));
            return;
          }
          announce();
          const chunk = await rest;
          if (chunk === undefined) c.error(new Error("client went away"));
          else {
            c.enqueue(chunk);
            c.close();
          }
        },
      });
      return { stream, started, release };
    };
    const blobUpload = halfThenWait(b.bytes);
    const blobWrite = store.write(b.digest, blobUpload.stream, { exact: b.bytes.byteLength });
    const fresh = new TextEncoder().encode("the new action result, rather longer than the old one");
    const acUpload = halfThenWait(fresh);
    const acWrite = store.write(ac, acUpload.stream, { exact: fresh.byteLength });
    await Promise.all([blobUpload.started, acUpload.started]);
    // The store opens a temp file once the first bytes are in hand (asynchronously): wait for both.
    const tempFiles = () => [...Deno.readDirSync(`${t.dir}/tmp`)].length;
    for (let i = 0; i < 500 && tempFiles() < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(tempFiles(), 2, "both temp files exist");
    await assertRejectsWithCode(store.readBytes(b.digest, { maxSize: 1000 }), Code.NotFound);
    assert.deepEqual(await store.readBytes(ac, { maxSize: 1000 }), old);
    // The blob's upload fails: nothing is stored. The AC entry's completes: the new value replaces the old.
    blobUpload.release(undefined);
    acUpload.release(fresh.slice(fresh.byteLength >> 1));
    await assert.rejects(blobWrite);
    await acWrite;
    await assertRejectsWithCode(store.readBytes(b.digest, { maxSize: 1000 }), Code.NotFound);
    assert.deepEqual(await store.readBytes(ac, { maxSize: 1000 }), fresh);
    assert.deepEqual([...Deno.readDirSync(`${t.dir}/tmp`)], []);
  } finally {
    await store.close();
    await t.remove();
  }
});
