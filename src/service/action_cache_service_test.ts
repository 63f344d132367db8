import assert from "node:assert/strict";
import { ActionCache } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { has, putBytes } from "../store/helpers.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { Code } from "../util/error.ts";
import { actionCacheKey, createActionCacheService } from "./action_cache_service.ts";
import { toProto } from "./cas_service.ts";
import { rejectsWithCode, serviceClient } from "./testing.ts";

const enc = new TextEncoder();

function setup(maxInlineBytes?: number) {
  const acStore = createMemoryStore();
  const casStore = createMemoryStore();
  const otherAc = createMemoryStore();
  const impl = createActionCacheService({
    instances: new Map([
      ["", { acStore, casStore }],
      ["main", { acStore: otherAc, casStore }],
      ["ro", { acStore, casStore, readOnly: true }],
    ]),
    ...(maxInlineBytes === undefined ? {} : { maxInlineBytes }),
  });
  return { acStore, casStore, otherAc, client: serviceClient(ActionCache, impl) };
}

Deno.test("GetActionResult misses are NOT_FOUND; UpdateActionResult stores under the action digest", async () => {
  const { acStore, client } = setup();
  const action = digestOf(enc.encode("action"));
  await rejectsWithCode(client.getActionResult({ actionDigest: toProto(action) }), Code.NotFound);
  const stored = await client.updateActionResult({
    actionDigest: toProto(action),
    actionResult: { exitCode: 7 },
  });
  assert.equal(stored.exitCode, 7);
  assert.ok((await has(acStore, actionCacheKey(action))) !== undefined);
  assert.equal((await client.getActionResult({ actionDigest: toProto(action) })).exitCode, 7);
});

Deno.test("Instances keep separate action caches; read_only refuses updates", async () => {
  const { client } = setup();
  const action = digestOf(enc.encode("separate"));
  await client.updateActionResult({
    instanceName: "main",
    actionDigest: toProto(action),
    actionResult: { exitCode: 1 },
  });
  await rejectsWithCode(client.getActionResult({ actionDigest: toProto(action) }), Code.NotFound);
  assert.equal(
    (await client.getActionResult({ instanceName: "main", actionDigest: toProto(action) })).exitCode,
    1,
  );
  await rejectsWithCode(
    client.updateActionResult({ instanceName: "ro", actionDigest: toProto(action), actionResult: {} }),
    Code.PermissionDenied,
  );
  await rejectsWithCode(
    client.getActionResult({ instanceName: "x", actionDigest: toProto(action) }),
    Code.InvalidArgument,
  );
});

Deno.test("UpdateActionResult validates the result", async () => {
  const { client } = setup();
  const action = digestOf(enc.encode("bad"));
  await rejectsWithCode(client.updateActionResult({ actionDigest: toProto(action) }), Code.InvalidArgument);
  await rejectsWithCode(
    client.updateActionResult({
      actionDigest: toProto(action),
      actionResult: { outputFiles: [{ path: "out", digest: { hash: "nothex", sizeBytes: 1n } }] },
    }),
    Code.InvalidArgument,
  );
  await rejectsWithCode(client.updateActionResult({ actionResult: {} }), Code.InvalidArgument);
});

Deno.test("GetActionResult inlines stdout, stderr and requested output files within the budget", async () => {
  const { casStore, client } = setup(100);
  const out = enc.encode("hello stdout");
  const err = enc.encode("hello stderr");
  const small = enc.encode("small file");
  const big = new Uint8Array(200).fill(1);
  for (const b of [out, err, small, big]) await putBytes(casStore, digestOf(b), b);
  const gone = digestOf(enc.encode("gone"));
  const action = digestOf(enc.encode("inline"));
  await client.updateActionResult({
    actionDigest: toProto(action),
    actionResult: {
      stdoutDigest: toProto(digestOf(out)),
      stderrDigest: toProto(digestOf(err)),
      outputFiles: [
        { path: "a/small", digest: toProto(digestOf(small)) },
        { path: "a/big", digest: toProto(digestOf(big)) },
        { path: "a/gone", digest: toProto(gone) },
        { path: "a/empty", digest: toProto(EMPTY_DIGEST) },
        { path: "a/unrequested", digest: toProto(digestOf(small)) },
      ],
    },
  });
  const plain = await client.getActionResult({ actionDigest: toProto(action) });
  assert.equal(plain.stdoutRaw.byteLength, 0);
  const r = await client.getActionResult({
    actionDigest: toProto(action),
    inlineStdout: true,
    inlineStderr: true,
    inlineOutputFiles: ["a/small", "a/big", "a/gone", "a/empty"],
  });
  assert.deepEqual(r.stdoutRaw, out);
  assert.deepEqual(r.stderrRaw, err);
  const byPath = new Map(r.outputFiles.map((f) => [f.path, f.contents.byteLength]));
  assert.deepEqual(Object.fromEntries(byPath), {
    "a/small": 10,
    "a/big": 0,
    "a/gone": 0,
    "a/empty": 0,
    "a/unrequested": 0,
  });
});
