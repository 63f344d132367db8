import assert from "node:assert/strict";
import { digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode } from "./conformance_suite.ts";
import {
  expectedUploadSize,
  getBytes,
  has,
  isDigestKey,
  keyToString,
  putBytes,
  resolveRange,
  sizeOfKey,
} from "./helpers.ts";
import { createMemoryStore } from "./memory_store.ts";

Deno.test("helpers: key formatting", () => {
  assert.equal(keyToString(EMPTY_DIGEST), `${EMPTY_DIGEST.hash}-0`);
  assert.equal(keyToString("plain"), "plain");
  assert.equal(isDigestKey(EMPTY_DIGEST), true);
  assert.equal(isDigestKey("x"), false);
  assert.equal(sizeOfKey({ hash: "a", size: 9 }), 9);
  assert.equal(sizeOfKey("x"), undefined);
});

Deno.test("helpers: getBytes refuses values larger than maxSize before and while reading", async () => {
  const store = createMemoryStore();
  const bytes = new Uint8Array(1000);
  const d = digestOf(bytes);
  await putBytes(store, d, bytes);
  await putBytes(store, "s", bytes);
  assert.equal(await has(store, d), 1000);
  await assertRejectsWithCode(getBytes(store, d, { maxSize: 999 }), Code.ResourceExhausted);
  await assertRejectsWithCode(getBytes(store, "s", { maxSize: 999 }), Code.ResourceExhausted);
  assert.equal((await getBytes(store, d, { maxSize: 10, offset: 990 })).byteLength, 10);
  assert.equal((await getBytes(store, "s", { maxSize: 10, offset: 5, length: 10 })).byteLength, 10);
});

Deno.test("helpers: upload size checks against the digest", () => {
  const d = { hash: "a".repeat(64), size: 10 };
  assert.equal(expectedUploadSize(d, { exact: 10 }), 10);
  // `{max}` under a digest: transformed bytes (compression), any size up to max.
  assert.equal(expectedUploadSize(d, { max: 100 }), undefined);
  assert.throws(() => expectedUploadSize(d, { exact: 11 }), /digest says 10 bytes, upload says 11/);
  assert.throws(() => expectedUploadSize(d, { max: 9 }), /upload allows at most 9/);
  assert.equal(expectedUploadSize("k", { max: 9 }), undefined);
});

Deno.test("helpers: resolveRange edges", () => {
  assert.deepEqual(resolveRange("k", 10), { start: 0, end: 10 });
  assert.deepEqual(resolveRange("k", 10, { offset: 10 }), { start: 10, end: 10 });
  assert.deepEqual(resolveRange("k", 10, { offset: 4, length: 100 }), { start: 4, end: 10 });
  assert.throws(() => resolveRange("k", 10, { offset: 11 }), /offset 11: it has only 10 bytes/);
  assert.throws(() => resolveRange("k", 10, { offset: -1 }), /Invalid read offset/);
  assert.throws(() => resolveRange("k", 10, { length: 1.5 }), /Invalid read length/);
});
