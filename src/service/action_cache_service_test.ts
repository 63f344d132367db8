import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ActionCache,
  ActionResultSchema,
  GetActionResultRequestSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { acKey, has, putBytes } from "../store/helpers.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { Code } from "../util/error.ts";
import { createActionCacheService } from "./action_cache_service.ts";
import { toProto } from "./cas_service.ts";
import { rejectsWithCode, serviceClient } from "../../tests/fixtures/service_testing.ts";

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
  return { acStore, casStore, otherAc, impl, client: serviceClient(ActionCache, impl) };
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
  assert.ok((await has(acStore, acKey(action))) !== undefined);
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

Deno.test("The encoded GetActionResult (gRPC fast path) answers as the decoded one", async () => {
  const { acStore, casStore, impl, client } = setup();
  const ctx = {} as Parameters<typeof impl.encoded.getActionResult>[1];
  const call = (req: Parameters<typeof create<typeof GetActionResultRequestSchema>>[1]) =>
    Promise.resolve(impl.encoded.getActionResult(
      toBinary(GetActionResultRequestSchema, create(GetActionResultRequestSchema, req)),
      ctx,
    ));
  const action = digestOf(enc.encode("encoded action"));
  const stdout = enc.encode("hello from stdout");
  await putBytes(casStore, digestOf(stdout), stdout);
  await client.updateActionResult({
    actionDigest: toProto(action),
    actionResult: {
      exitCode: 3,
      stdoutDigest: toProto(digestOf(stdout)),
      outputFiles: [{ path: "a/b.o", digest: toProto(digestOf(stdout)) }],
    },
  });

  // No inlining: the stored bytes as they are, decoding to the same result the decoded method returns.
  const plain = fromBinary(ActionResultSchema, await call({ actionDigest: toProto(action) }));
  const decoded = await client.getActionResult({ actionDigest: toProto(action) });
  assert.equal(plain.exitCode, 3);
  assert.deepEqual(toBinary(ActionResultSchema, plain), toBinary(ActionResultSchema, decoded));
  assert.equal(plain.stdoutRaw.byteLength, 0);

  // Inlining requested: filled from the CAS like the decoded method.
  const inlined = fromBinary(
    ActionResultSchema,
    await call({ actionDigest: toProto(action), inlineStdout: true }),
  );
  assert.deepEqual(inlined.stdoutRaw, stdout);

  // Misses, bad requests and bad digests fail with the same codes.
  const missing = digestOf(enc.encode("never stored"));
  await assert.rejects(
    call({ actionDigest: toProto(missing) }),
    (e: { code?: number }) => e.code === Code.NotFound,
  );
  await assert.rejects(
    Promise.resolve().then(() => impl.encoded.getActionResult(new Uint8Array([0x12, 0x50, 1]), ctx)),
    (e: { code?: number; message?: string }) =>
      e.code === Code.InvalidArgument && /GetActionResultRequest/.test(e.message ?? ""),
  );
  await assert.rejects(
    call({ actionDigest: { hash: "abc", sizeBytes: 1n } }),
    (e: { code?: number }) => e.code === Code.InvalidArgument,
  );

  // Stored bytes that are not a protobuf message (a damaged entry) are a miss, never served.
  const damaged = digestOf(enc.encode("damaged"));
  await putBytes(acStore, acKey(damaged), new Uint8Array([0x0a, 0x7f, 0x01, 0x02]));
  await assert.rejects(
    call({ actionDigest: toProto(damaged) }),
    (e: { code?: number }) => e.code === Code.NotFound,
  );
  await rejectsWithCode(client.getActionResult({ actionDigest: toProto(damaged) }), Code.NotFound);
});
