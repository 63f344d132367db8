import assert from "node:assert/strict";
import { digestOf } from "../digest/digest.ts";
import { Code } from "../util/error.ts";
import { bytesStream, patternBytes } from "../util/streams.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { has, putBytes } from "./helpers.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry } from "./registry.ts";
import { createVerifyStore } from "./verify_store.ts";

runStoreConformance(
  "verify(memory)",
  () =>
    Promise.resolve({
      store: createVerifyStore(createMemoryStore(), { verifySize: true, verifyHash: true }),
      cleanup: () => Promise.resolve(),
    }),
  { verifiesHash: true },
);

Deno.test("verify: hash mismatch names expected and actual, and the backend stores nothing", async () => {
  const inner = createMemoryStore();
  const store = createVerifyStore(inner, { verifySize: true, verifyHash: true });
  const bytes = await patternBytes(3 << 20, 1);
  const d = digestOf(bytes);
  const wrong = digestOf(new Uint8Array(bytes.byteLength));
  const err = await assertRejectsWithCode(putBytes(store, wrong, bytes), Code.InvalidArgument);
  assert.match(err.message, new RegExp(`expected ${wrong.hash}, computed ${d.hash}`));
  assert.equal(inner.count, 0);
  await putBytes(store, d, bytes);
  assert.equal(await has(inner, d), bytes.byteLength);
});

Deno.test("verify: size-only verification lets any content through but not a wrong length", async () => {
  const inner = createMemoryStore();
  const store = createVerifyStore(inner, { verifySize: true, verifyHash: false });
  const d = { hash: "a".repeat(64), size: 5 };
  await putBytes(store, d, new Uint8Array(5));
  assert.equal(await has(inner, d), 5);
  // {max} uploads bypass the backend's exact check; verify still counts.
  const d2 = { hash: "b".repeat(64), size: 5 };
  const err = await assertRejectsWithCode(
    store.write(d2, bytesStream(new Uint8Array(4)), { max: 100 }),
    Code.InvalidArgument,
  );
  assert.match(err.message, /expected 5 bytes, got 4/);
  assert.equal(await has(inner, d2), undefined);
});

Deno.test("verify: string keys (AC entries) pass unchecked", async () => {
  const inner = createMemoryStore();
  const store = createVerifyStore(inner, { verifySize: true, verifyHash: true });
  await putBytes(store, "ac-key", new Uint8Array([1, 2, 3]));
  assert.equal(await has(store, "ac-key"), 3);
});

Deno.test("verify: registry builds it with its backend and rejects other hash functions", async () => {
  const registry = createStoreRegistry();
  const store = registry.build("cas", {
    verify: { backend: { memory: {} }, verify_size: true, verify_hash: true },
  });
  assert.equal(store.kind, "verify");
  const bytes = new TextEncoder().encode("checked");
  await assertRejectsWithCode(
    putBytes(store, { hash: "0".repeat(64), size: 7 }, bytes),
    Code.InvalidArgument,
  );
  assert.throws(
    () =>
      registry.build("cas", { verify: { backend: { memory: {} }, hash_verification_function: "blake3" } }),
    /Cannot open store "cas": hash_verification_function "blake3" is not supported/,
  );
  assert.throws(
    () => registry.build("cas", { verify: { backend: { nope: {} } } }),
    /Cannot open store "cas": verify\.backend: unknown store kind "nope"; valid kinds are memory, /,
  );
  await store.close?.();
});
