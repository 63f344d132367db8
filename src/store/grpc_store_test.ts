import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { digestOf } from "../digest/digest.ts";
import { ActionResultSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { Code } from "../util/error.ts";
import { patternBytes } from "../util/streams.ts";
import { startTestReapiServer } from "../../tests/fixtures/test_reapi_server.ts";
import { storeOnBackend } from "../../tests/fixtures/backends.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { createGrpcStore } from "./grpc_store.ts";
import { acKey, getBytes, has, putBytes } from "./helpers.ts";

runStoreConformance("grpc (cas)", async () => {
  const server = await startTestReapiServer();
  return await storeOnBackend(
    server,
    createGrpcStore({
      instance_name: "main",
      endpoints: [{ address: server.address }],
      store_type: "cas",
      connections_per_endpoint: 2,
    }),
  );
}, { stringKeys: false });

// The key's type picks the RPCs (AC key → GetActionResult/UpdateActionResult, digest → CAS/ByteStream),
// so a store of store_type "ac" passes the whole suite as well.
runStoreConformance("grpc (ac)", async () => {
  const server = await startTestReapiServer();
  return await storeOnBackend(
    server,
    createGrpcStore({ instance_name: "main", endpoints: [{ address: server.address }], store_type: "ac" }),
  );
}, { stringKeys: false });

Deno.test("grpc store: AC keys use the ActionCache service, digests the CAS; string keys are refused", async () => {
  const server = await startTestReapiServer();
  const store = createGrpcStore({ endpoints: [{ address: server.address }], store_type: "ac" });
  try {
    const action = new TextEncoder().encode("the action message, 48 bytes long, more or less");
    const d = digestOf(action);
    const result = toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 1 }));
    await putBytes(store, acKey(d), result);
    assert.equal(server.calls.get("UpdateActionResult"), 1);
    assert.equal(server.calls.get("BatchUpdateBlobs") ?? 0, 0);
    assert.deepEqual(await getBytes(store, acKey(d), { maxSize: 100 }), result);
    assert.equal(server.calls.get("GetActionResult"), 1);
    assert.equal(await has(store, d), undefined, "the AC entry is not the action's blob");
    await putBytes(store, d, action);
    assert.equal(server.calls.get("BatchUpdateBlobs"), 1);
    assert.deepEqual(await store.hasMany([acKey(d), d]), [result.byteLength, action.byteLength]);
    await assertRejectsWithCode(putBytes(store, `${d.hash}-${d.size}`, result), Code.InvalidArgument);
    await assertRejectsWithCode(store.read(`${d.hash}-${d.size}`), Code.InvalidArgument);
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("grpc store: small blobs use BatchUpdateBlobs, large ones a streamed ByteStream Write", async () => {
  const server = await startTestReapiServer();
  const store = createGrpcStore({ endpoints: [{ address: server.address }], store_type: "cas" });
  try {
    const small = new TextEncoder().encode("small");
    const large = await patternBytes(3 * 1024 * 1024 + 5, 3);
    await putBytes(store, digestOf(small), small);
    await putBytes(store, digestOf(large), large);
    assert.equal(server.calls.get("BatchUpdateBlobs"), 1);
    assert.equal(server.calls.get("Write"), 1);
    assert.equal(server.uploads.get(`${digestOf(large).hash}-${large.byteLength}`), 1);
    const got = await getBytes(store, digestOf(large), { maxSize: 8 << 20, offset: 100, length: 2_000_000 });
    assert.deepEqual(got, large.subarray(100, 2_000_100));
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("grpc store: the AC side encodes GetActionResult and decodes UpdateActionResult", async () => {
  const server = await startTestReapiServer();
  const store = createGrpcStore({
    instance_name: "i",
    endpoints: [{ address: server.address }],
    store_type: "ac",
  });
  try {
    const action = digestOf(new TextEncoder().encode("an action"));
    const key = acKey(action);
    assert.deepEqual(await store.hasMany([key]), [undefined]);
    await assertRejectsWithCode(store.read(key), Code.NotFound);
    const result = create(ActionResultSchema, { exitCode: 3, stdoutRaw: new Uint8Array([1, 2, 3]) });
    const bytes = toBinary(ActionResultSchema, result);
    await putBytes(store, key, bytes);
    assert.equal(server.actionResults.get(`${action.hash}-${action.size}`)?.exitCode, 3);
    assert.equal(await has(store, key), bytes.byteLength);
    const back = fromBinary(ActionResultSchema, await getBytes(store, key, { maxSize: 1 << 20 }));
    assert.equal(back.exitCode, 3);
    await assertRejectsWithCode(
      putBytes(store, key, new Uint8Array([0xff, 0xff, 0xff])),
      Code.InvalidArgument,
    );
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("grpc store: unary calls are retried per the retry settings; streamed uploads are not replayed", async () => {
  let failures = 0;
  const server = await startTestReapiServer({ failWrites: () => failures-- > 0 });
  const noRetry = createGrpcStore({ endpoints: [{ address: server.address }], store_type: "cas" });
  const retrying = createGrpcStore({
    endpoints: [{ address: server.address }],
    store_type: "cas",
    retry: { max_retries: 2, delay: 0.01 },
  });
  const dead = createGrpcStore({
    endpoints: [{ address: "grpc://127.0.0.1:1" }],
    store_type: "cas",
    retry: { max_retries: 1, delay: 0.01 },
  });
  try {
    const small = new TextEncoder().encode("small blob");
    failures = 1;
    await assertRejectsWithCode(putBytes(noRetry, digestOf(small), small), Code.Unavailable);
    failures = 2;
    await putBytes(retrying, digestOf(small), small);
    assert.equal(server.calls.get("BatchUpdateBlobs"), 4);
    assert.equal(await has(retrying, digestOf(small)), small.byteLength);
    // A streamed upload consumes its source once: the failure surfaces even with retries configured.
    const large = await patternBytes(200_000, 9);
    failures = 1;
    await assertRejectsWithCode(putBytes(retrying, digestOf(large), large), Code.Unavailable);
    assert.equal(await has(retrying, digestOf(large)), undefined);
    // An unreachable endpoint is UNAVAILABLE after the retries.
    await assertRejectsWithCode(dead.hasMany([digestOf(large)]), Code.Unavailable);
  } finally {
    await dead.close();
    await noRetry.close();
    await retrying.close();
    await server.close();
  }
});

Deno.test("grpc store: bad specs are refused with a clear message", () => {
  assert.throws(
    () => createGrpcStore({ endpoints: [{ address: "http//nope" }], store_type: "cas" }),
    /Invalid endpoint address "http\/\/nope"/,
  );
  assert.throws(() => createGrpcStore({ endpoints: [], store_type: "cas" }), /at least one endpoint/);
});
