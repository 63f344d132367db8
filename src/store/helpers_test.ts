import assert from "node:assert/strict";
import { digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode } from "./conformance_suite.ts";
import {
  acKey,
  expectedUploadSize,
  getBytes,
  has,
  isAcKey,
  isDigestKey,
  keyId,
  keyToString,
  putBytes,
  resolveRange,
  routingDigest,
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

Deno.test("helpers: action-cache keys are typed, routed on the action digest, and take any size", () => {
  const action = { hash: "ab".repeat(32), size: 321 };
  const key = acKey(action);
  assert.equal(isAcKey(key), true);
  assert.equal(isDigestKey(key), false);
  assert.equal(isAcKey(action), false);
  assert.equal(isAcKey(`${action.hash}-321`), false);
  assert.deepEqual(routingDigest(key), action);
  assert.deepEqual(routingDigest(action), action);
  assert.equal(routingDigest("x"), undefined);
  assert.equal(sizeOfKey(key), undefined, "an AC key does not announce its value's size");
  assert.equal(keyToString(key), `ac:${action.hash}-321`);
  // Ids never collide across kinds, even for look-alike strings.
  const ids = [keyId(key), keyId(action), keyId(`${action.hash}-321`), keyId(`ac:${action.hash}-321`)];
  assert.equal(new Set(ids).size, 4);
  // Any size goes for an AC entry; a CAS digest must match.
  assert.equal(expectedUploadSize(key, { exact: 5 }), 5);
  assert.equal(expectedUploadSize(key, { max: 5 }), undefined);
  assert.throws(() => expectedUploadSize(action, { exact: 5 }), /Size mismatch/);
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
