import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ActionResultSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { digestOf, EMPTY_SHA256 } from "../digest/digest.ts";
import { getBytes, has } from "../store/helpers.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { patternBytes } from "../util/streams.ts";
import { createHttpCacheRoute, decodeSizeRecord, encodeSizeRecord } from "./http_cache_route.ts";
import { createCompletenessCheckingStore } from "../store/completeness_checking_store.ts";

function setup() {
  const casStore = createMemoryStore();
  const acStore = createMemoryStore();
  const route = createHttpCacheRoute({
    instances: new Map([["", { casStore, acStore }], ["team/a", { casStore, acStore, readOnly: true }]]),
  });
  const call = async (method: string, path: string, body?: Uint8Array) => {
    const res = await route(
      new Request(`http://cache${path}`, {
        method,
        ...(body
          ? { body: body as Uint8Array<ArrayBuffer>, headers: { "content-length": String(body.byteLength) } }
          : {}),
      }),
    );
    assert.ok(res, `${method} ${path} was not handled`);
    return { status: res.status, body: new Uint8Array(await res.arrayBuffer()), headers: res.headers };
  };
  return { casStore, acStore, route, call };
}

Deno.test("HTTP cache: PUT then GET/HEAD a CAS blob; the blob is stored under its real digest", async () => {
  const { casStore, call } = setup();
  const data = await patternBytes(300_000, 4);
  const d = digestOf(data);
  assert.equal((await call("GET", `/cas/${d.hash}`)).status, 404);
  assert.equal((await call("PUT", `/cas/${d.hash}`, data)).status, 200);
  assert.deepEqual(await getBytes(casStore, d, { maxSize: d.size }), data);
  const got = await call("GET", `/cas/${d.hash}`);
  assert.equal(got.status, 200);
  assert.deepEqual(got.body, data);
  const head = await call("HEAD", `/cas/${d.hash}`);
  assert.deepEqual([head.status, head.headers.get("content-length")], [200, "300000"]);
  assert.equal((await call("GET", `/cas/${EMPTY_SHA256}`)).status, 200);
  assert.equal((await call("GET", `/team/a/cas/${d.hash}`)).status, 200);
});

Deno.test("HTTP cache: a CAS PUT whose body does not match the hash is 400 and stores nothing", async () => {
  const { casStore, call } = setup();
  const data = new TextEncoder().encode("the real body");
  const wrong = digestOf(new TextEncoder().encode("another body"));
  const res = await call("PUT", `/cas/${wrong.hash}`, data);
  assert.equal(res.status, 400);
  assert.match(new TextDecoder().decode(res.body), /Hash mismatch/);
  assert.equal(await has(casStore, { hash: wrong.hash, size: data.byteLength }), undefined);
  assert.equal((await call("GET", `/cas/${wrong.hash}`)).status, 404);
});

Deno.test("HTTP cache: AC entries are ActionResult bytes; read-only instances refuse PUT", async () => {
  const { call } = setup();
  const key = digestOf(new TextEncoder().encode("action")).hash;
  const result = toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 3 }));
  assert.equal((await call("GET", `/ac/${key}`)).status, 404);
  assert.equal((await call("PUT", `/ac/${key}`, result)).status, 200);
  const got = await call("GET", `/ac/${key}`);
  assert.deepEqual([got.status, got.body], [200, result]);
  assert.equal((await call("PUT", `/ac/${key}`, new Uint8Array([0xff, 0xff]))).status, 400);
  assert.equal((await call("PUT", `/team/a/ac/${key}`, result)).status, 403);
  assert.equal((await call("GET", `/other/ac/${key}`)).status, 404);
});

Deno.test("HTTP cache: other paths and methods are left to other routes", async () => {
  const { route } = setup();
  assert.equal(await route(new Request("http://cache/status")), undefined);
  assert.equal(await route(new Request("http://cache/cas/abc")), undefined);
  assert.equal(await route(new Request(`http://cache/cas/${EMPTY_SHA256}`, { method: "DELETE" })), undefined);
});

Deno.test("HTTP cache: blob size records survive a restart behind a completeness_checking AC", async () => {
  const casStore = createMemoryStore();
  const acStore = createCompletenessCheckingStore(createMemoryStore(), casStore);
  const instances = new Map([["", { casStore, acStore }]]);
  const data = new TextEncoder().encode("kept across restarts");
  const d = digestOf(data);
  const put = await createHttpCacheRoute({ instances })(
    new Request(`http://cache/cas/${d.hash}`, {
      method: "PUT",
      body: data,
      headers: { "content-length": String(data.byteLength) },
    }),
  );
  assert.equal(put?.status, 200);
  // A fresh route has no in-memory size cache: the record must come from the completeness-checked AC.
  const got = await createHttpCacheRoute({ instances })(new Request(`http://cache/cas/${d.hash}`));
  assert.equal(got?.status, 200);
  assert.deepEqual(new Uint8Array(await got!.arrayBuffer()), data);
});

Deno.test("HTTP cache: size records decode in the ActionResult form and the older decimal form", () => {
  const d = digestOf(new TextEncoder().encode("x"));
  assert.equal(decodeSizeRecord(d.hash, encodeSizeRecord(d)), 1);
  assert.equal(decodeSizeRecord(d.hash, new TextEncoder().encode("1")), 1);
  assert.equal(decodeSizeRecord("0".repeat(64), encodeSizeRecord(d)), undefined);
  assert.equal(decodeSizeRecord(d.hash, new Uint8Array([0xff, 0xff])), undefined);
});

Deno.test("HTTP cache: an empty or short PUT of a stored blob's hash is 400 and GET still returns the blob", async () => {
  const { call } = setup();
  const data = await patternBytes(5000, 7);
  const d = digestOf(data);
  assert.equal((await call("PUT", `/cas/${d.hash}`, data)).status, 200);
  // Empty body (Content-Length: 0) for a non-empty hash.
  const empty = await call("PUT", `/cas/${d.hash}`, new Uint8Array(0));
  assert.equal(empty.status, 400);
  // The right length prefix of the right bytes, and right length with wrong bytes, while the blob is stored.
  assert.equal((await call("PUT", `/cas/${d.hash}`, data.subarray(0, 100))).status, 400);
  assert.equal((await call("PUT", `/cas/${d.hash}`, new Uint8Array(5000))).status, 400);
  const got = await call("GET", `/cas/${d.hash}`);
  assert.equal(got.status, 200);
  assert.deepEqual(got.body, data);
  // The same bytes again are fine.
  assert.equal((await call("PUT", `/cas/${d.hash}`, data)).status, 200);
  // The empty blob needs no body.
  assert.equal((await call("PUT", `/cas/${EMPTY_SHA256}`, new Uint8Array(0))).status, 200);
});

Deno.test("HTTP cache: a read-only instance refuses PUT /cas and records nothing", async () => {
  const { call } = setup();
  const data = new TextEncoder().encode("read only");
  const d = digestOf(data);
  assert.equal((await call("PUT", `/team/a/cas/${d.hash}`, data)).status, 403);
  assert.equal((await call("GET", `/team/a/cas/${d.hash}`)).status, 404);
});
