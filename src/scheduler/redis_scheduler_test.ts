import assert from "node:assert/strict";
import { ExecutionStage_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type RedisServer, startRedis } from "../../tests/fixtures/backends.ts";
import { FakeWorker } from "../../tests/fixtures/fake_worker.ts";
import { actionRequest } from "../../tests/fixtures/test_actions.ts";
import { waitUntil } from "../../tests/fixtures/wait.ts";
import { createRedisStore, type RedisStore } from "../store/redis_store.ts";
import { CairnError, Code } from "../util/error.ts";
import { RedisScheduler } from "./redis_scheduler.ts";
import type { SimpleSpec } from "./scheduler_spec.ts";
import type { ActionHandle, OperationState } from "./types.ts";

/** Two replicas (two schedulers on one Redis, as two processes would be). */
async function withReplicas(
  spec: SimpleSpec,
  fn: (a: RedisScheduler, b: RedisScheduler) => Promise<void>,
): Promise<void> {
  let redis: RedisServer | undefined;
  let store: RedisStore | undefined;
  const logs: string[] = [];
  const replicas: RedisScheduler[] = [];
  try {
    redis = await startRedis();
    store = createRedisStore({ addresses: [redis.url], keyPrefix: `t-${crypto.randomUUID()}/` });
    await store.init();
    for (let i = 0; i < 2; i++) replicas.push(new RedisScheduler(spec, store, "MAIN", (m) => logs.push(m)));
    await fn(replicas[0]!, replicas[1]!);
  } finally {
    for (const r of replicas) await r.close();
    await store?.close();
    await redis?.stop();
  }
}

/** Reads a handle (without closing it) until `pred` holds; returns that state. */
async function until(handle: ActionHandle, pred: (s: OperationState) => boolean): Promise<OperationState> {
  const iterators = ITERATORS.get(handle) ??
    ITERATORS.set(handle, handle[Symbol.asyncIterator]()).get(handle)!;
  for (;;) {
    const r = await iterators.next();
    if (r.done) throw new Error("the handle ended first");
    if (pred(r.value)) return r.value;
  }
}

const ITERATORS = new WeakMap<ActionHandle, AsyncIterator<OperationState>>();

const FAST = { worker_timeout_s: 1, retain_completed_for_s: 30 };

Deno.test("RedisScheduler: a cancel on one replica kills the run on the other replica's worker", async () => {
  await withReplicas(FAST, async (a, b) => {
    const worker = new FakeWorker(a);
    const handle = await b.addAction(actionRequest("cancel-me"));
    const task = await worker.nextTask();
    assert.equal(task.operationId, handle.name);
    await until(handle, (s) => s.stage === ExecutionStage_Value.EXECUTING);
    assert.equal(await b.cancelOperation(handle.name), true);
    await waitUntil(() => worker.kills.includes(handle.name), { what: "the kill on A's worker" });
    const state = await until(handle, (s) => s.done);
    assert.equal(state.response?.status?.code, Code.Cancelled);
    assert.equal((await a.findOperation(handle.name))?.response?.status?.code, Code.Cancelled);
    assert.equal(await a.cancelOperation(handle.name), false);
    handle.close();
  });
});

Deno.test("RedisScheduler: an action no worker of any replica could run fails FAILED_PRECONDITION", async () => {
  await withReplicas(
    { ...FAST, supported_platform_properties: { os: "exact" }, no_matching_worker_grace_s: 0.2 },
    async (a, b) => {
      // No worker at all: it waits the grace, then fails.
      const handle = await b.addAction(actionRequest("mac", { platform: [{ name: "os", value: "mac" }] }));
      const state = await until(handle, (s) => s.done);
      assert.equal(state.response?.status?.code, Code.FailedPrecondition);
      assert.match(state.response?.status?.message ?? "", /no worker is connected/);
      handle.close();
      // A worker on replica A that could never run it: B refuses it at once, naming the property.
      const worker = new FakeWorker(a, { properties: [{ name: "os", value: "linux" }] });
      await waitUntil(async () => {
        try {
          await b.addAction(actionRequest("mac2", { platform: [{ name: "os", value: "mac" }] }));
          return false;
        } catch (err) {
          return (err as CairnError).code === Code.FailedPrecondition && /os/.test((err as Error).message);
        }
      }, { what: "the refusal" });
      assert.equal(worker.tasks.length, 0);
    },
  );
});

Deno.test("RedisScheduler: an operation no client listens to is dropped DEADLINE_EXCEEDED and its run killed", async () => {
  await withReplicas({ ...FAST, client_action_timeout_s: 0.5 }, async (a, b) => {
    const worker = new FakeWorker(b);
    const handle = await a.addAction(actionRequest("orphan"));
    const name = handle.name;
    await worker.nextTask();
    handle.close();
    await waitUntil(() => worker.kills.includes(name), { what: "the orphaned run to be killed" });
    const state = await b.findOperation(name);
    assert.equal(state?.done, true);
    assert.equal(state?.response?.status?.code, Code.DeadlineExceeded);
  });
});

Deno.test("RedisScheduler: an infrastructure failure requeues the action to another replica's worker", async () => {
  await withReplicas(FAST, async (a, b) => {
    const wa = new FakeWorker(a);
    const handle = await a.addAction(actionRequest("retry-me"));
    const first = await wa.nextTask();
    const wb = new FakeWorker(b);
    wa.session.goingAway(); // A's worker takes nothing new, so the retry goes to B's
    wa.fail(first.operationId, new CairnError(Code.Unavailable, "disk full"));
    const second = await wb.nextTask();
    assert.equal(second.operationId, handle.name);
    wb.complete(second.operationId, 3);
    const state = await until(handle, (s) => s.done);
    assert.equal(state.response?.result?.exitCode, 3);
    handle.close();
  });
});
