import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ActionResultSchema,
  ExecutionStage_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { acKey, putBytes } from "../store/helpers.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { CacheLookupScheduler } from "./cache_lookup_scheduler.ts";
import { FakeWorker } from "../../tests/fixtures/fake_worker.ts";
import { SimpleScheduler } from "./simple_scheduler.ts";
import { actionRequest } from "../../tests/fixtures/test_actions.ts";
import type { ActionHandle, OperationState } from "./types.ts";

async function states(handle: ActionHandle): Promise<OperationState[]> {
  const out: OperationState[] = [];
  for await (const s of handle) out.push(s);
  return out;
}

async function setup(
  fn: (s: CacheLookupScheduler, ac: MemoryStore, inner: SimpleScheduler) => Promise<void>,
) {
  const ac = new MemoryStore();
  const inner = new SimpleScheduler({});
  const s = new CacheLookupScheduler(ac, inner);
  try {
    await fn(s, ac, inner);
  } finally {
    await s.close();
  }
}

Deno.test("a cache hit completes with cached_result and never reaches a worker", async () => {
  await setup(async (s, ac, inner) => {
    const worker = new FakeWorker(inner);
    const req = actionRequest("hit");
    await putBytes(
      ac,
      acKey(req.actionDigest),
      toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 0 })),
    );
    const seen = await states(await s.addAction(req));
    assert.equal(seen[0]?.stage, ExecutionStage_Value.CACHE_CHECK);
    const last = seen.at(-1)!;
    assert.ok(last.done);
    assert.equal(last.response?.cachedResult, true);
    assert.equal(last.response?.result?.exitCode, 0);
    assert.equal(worker.tasks.length, 0);
    assert.equal((await s.findOperation(last.name))?.done, true);
  });
});

Deno.test("a cache miss forwards under the same operation name", async () => {
  await setup(async (s, _ac, inner) => {
    const worker = new FakeWorker(inner);
    const handle = await s.addAction(actionRequest("miss"));
    const all = states(handle);
    const task = await worker.nextTask();
    assert.equal(task.operationId, handle.name);
    assert.equal((await s.findOperation(handle.name))?.stage, ExecutionStage_Value.EXECUTING);
    worker.complete(task.operationId, 2);
    const seen = await all;
    assert.deepEqual(
      seen.map((x) => x.stage).filter((st, i, a) => a.indexOf(st) === i),
      [
        ExecutionStage_Value.CACHE_CHECK,
        ExecutionStage_Value.QUEUED,
        ExecutionStage_Value.EXECUTING,
        ExecutionStage_Value.COMPLETED,
      ].filter((st) => seen.some((x) => x.stage === st)),
    );
    assert.equal(seen.at(-1)?.response?.cachedResult, false);
    assert.equal(seen.at(-1)?.response?.result?.exitCode, 2);
  });
});

Deno.test("skip_cache_lookup runs the action even when cached", async () => {
  await setup(async (s, ac, inner) => {
    const worker = new FakeWorker(inner);
    const req = actionRequest("hit", { skipCacheLookup: true });
    await putBytes(
      ac,
      acKey(req.actionDigest),
      toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 0 })),
    );
    const handle = await s.addAction(req);
    const task = await worker.nextTask();
    assert.ok(task.skipCacheLookup);
    worker.complete(task.operationId, 0);
    const seen = await states(handle);
    assert.ok(!seen.some((x) => x.stage === ExecutionStage_Value.CACHE_CHECK));
    assert.equal(seen.at(-1)?.response?.cachedResult, false);
  });
});

Deno.test("a re-attached listener follows a forwarded operation to completion", async () => {
  await setup(async (s, _ac, inner) => {
    const worker = new FakeWorker(inner);
    const first = await s.addAction(actionRequest("x"));
    const again = await s.waitOperation(first.name);
    assert.ok(again);
    const both = Promise.all([states(first), states(again)]);
    const t = await worker.nextTask();
    worker.complete(t.operationId, 5);
    const [a, b] = await both;
    assert.equal(a.at(-1)?.response?.result?.exitCode, 5);
    assert.equal(b.at(-1)?.response?.result?.exitCode, 5);
  });
});
