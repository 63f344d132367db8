import assert from "node:assert/strict";
import { ExecutionStage_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { CairnError, Code } from "../util/error.ts";
import { exitResponse, FakeWorker } from "../../tests/fixtures/fake_worker.ts";

const exit0 = () => exitResponse(0);
import type { SimpleSpec } from "./scheduler_spec.ts";
import { SimpleScheduler } from "./simple_scheduler.ts";
import { actionRequest } from "../../tests/fixtures/test_actions.ts";
import type { ActionHandle, OperationState } from "./types.ts";

const S = ExecutionStage_Value;

async function withScheduler(spec: SimpleSpec, fn: (s: SimpleScheduler) => Promise<void>): Promise<void> {
  const s = new SimpleScheduler(spec);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

async function final(handle: ActionHandle): Promise<OperationState> {
  let last: OperationState | undefined;
  for await (const state of handle) last = state;
  assert.ok(last?.done, "operation should complete");
  return last;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond`; the timeout is only an upper bound, generous for a loaded machine. */
async function until(cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await sleep(5);
  }
}

Deno.test("an action goes queued, executing, completed and carries the worker's result", async () => {
  await withScheduler({}, async (s) => {
    const handle = await s.addAction(actionRequest("a"));
    const stages: ExecutionStage_Value[] = [];
    const done = (async () => {
      for await (const st of handle) stages.push(st.stage);
    })();
    const worker = new FakeWorker(s);
    const task = await worker.nextTask();
    assert.equal(task.operationId, handle.name);
    assert.ok(task.uploadToActionCache);
    await until(() => stages.includes(S.EXECUTING));
    worker.complete(task.operationId, 7);
    await done;
    assert.deepEqual(stages, [S.QUEUED, S.EXECUTING, S.COMPLETED]);
    assert.equal(handle.current().response?.result?.exitCode, 7);
    assert.match(handle.name, /^main\/operations\/[0-9a-f-]{36}$/);
  });
});

Deno.test("identical in-flight actions are merged and every caller gets the result", async () => {
  await withScheduler({}, async (s) => {
    const worker = new FakeWorker(s);
    const a = await s.addAction(actionRequest("same"));
    const b = await s.addAction(actionRequest("same"));
    assert.notEqual(a.name, b.name);
    const task = await worker.nextTask();
    worker.complete(task.operationId, 3);
    const [ra, rb] = await Promise.all([final(a), final(b)]);
    assert.equal(ra.response?.result?.exitCode, 3);
    assert.equal(rb.response?.result?.exitCode, 3);
    assert.equal(worker.tasks.length, 1);
  });
});

Deno.test("do_not_cache actions are not merged", async () => {
  await withScheduler({}, async (s) => {
    const worker = new FakeWorker(s, { maxInflightTasks: 0 });
    const a = await s.addAction(actionRequest("same", { doNotCache: true }));
    const b = await s.addAction(actionRequest("same", { doNotCache: true }));
    const t1 = await worker.nextTask();
    const t2 = await worker.nextTask();
    assert.ok(!t1.uploadToActionCache);
    worker.complete(t1.operationId);
    worker.complete(t2.operationId);
    await Promise.all([final(a), final(b)]);
    assert.equal(worker.tasks.length, 2);
  });
});

Deno.test("the queue runs higher priority first, then older first", async () => {
  await withScheduler({}, async (s) => {
    const handles = [
      await s.addAction(actionRequest("low", { priority: 0 })),
      await s.addAction(actionRequest("high1", { priority: 10 })),
      await s.addAction(actionRequest("mid", { priority: 5 })),
      await s.addAction(actionRequest("high2", { priority: 10 })),
    ];
    const worker = new FakeWorker(s, { maxInflightTasks: 1 });
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      const t = await worker.nextTask();
      order.push(handles.find((h) => h.name === t.operationId)!.name);
      worker.complete(t.operationId);
    }
    assert.deepEqual(order, [handles[1]!.name, handles[3]!.name, handles[2]!.name, handles[0]!.name]);
    for (const h of handles) h.close();
  });
});

Deno.test("a merged request with higher priority moves the queued action up", async () => {
  await withScheduler({}, async (s) => {
    const a = await s.addAction(actionRequest("a"));
    const b = await s.addAction(actionRequest("b"));
    const b2 = await s.addAction(actionRequest("b", { priority: 9 }));
    const worker = new FakeWorker(s);
    const first = await worker.nextTask();
    assert.equal(first.operationId, b.name);
    for (const h of [a, b, b2]) h.close();
  });
});

Deno.test("minimum properties are counted down while actions run and restored after", async () => {
  await withScheduler({ supported_platform_properties: { cpu_count: "minimum" } }, async (s) => {
    const worker = new FakeWorker(s, {
      maxInflightTasks: 0,
      properties: [{ name: "cpu_count", value: "4" }],
    });
    const need2 = [{ name: "cpu_count", value: "2" }];
    const hs = await Promise.all(
      ["x", "y", "z"].map((k) => s.addAction(actionRequest(k, { platform: need2 }))),
    );
    const t1 = await worker.nextTask();
    await worker.nextTask();
    await sleep(20); // not waiting for an event: time for a wrong dispatch to show
    assert.equal(worker.tasks.length, 2, "a third action needing 2 of 4 CPUs must wait");
    worker.complete(t1.operationId);
    await worker.nextTask();
    assert.equal(worker.peakRunning, 2);
    for (const t of [...worker.running.keys()]) worker.complete(t);
    await Promise.all(hs.map(final));
  });
});

Deno.test("an action no connected worker matches fails at once naming the properties", async () => {
  await withScheduler({ supported_platform_properties: { os: "exact", cpu_count: "minimum" } }, async (s) => {
    const worker = new FakeWorker(s, {
      properties: [{ name: "os", value: "linux" }, { name: "cpu_count", value: "4" }],
    });
    await assert.rejects(
      s.addAction(
        actionRequest("a", { platform: [{ name: "os", value: "mac" }, { name: "cpu_count", value: "2" }] }),
      ),
      (e: CairnError) =>
        e.code === Code.FailedPrecondition && /os=mac \(exact\)/.test(e.message) &&
        !/cpu_count/.test(e.message),
    );
    await assert.rejects(
      s.addAction(actionRequest("b", { platform: [{ name: "cpu_count", value: "8" }] })),
      (e: CairnError) => e.code === Code.FailedPrecondition && /cpu_count=8 \(minimum\)/.test(e.message),
    );
    assert.equal(worker.tasks.length, 0);
  });
});

Deno.test("an unknown or malformed action property is INVALID_ARGUMENT", async () => {
  await withScheduler({ supported_platform_properties: { cpu_count: "minimum" } }, async (s) => {
    await assert.rejects(
      s.addAction(actionRequest("a", { platform: [{ name: "gpu", value: "1" }] })),
      (e: CairnError) => e.code === Code.InvalidArgument && /"gpu"/.test(e.message),
    );
    await assert.rejects(
      s.addAction(actionRequest("a", { platform: [{ name: "cpu_count", value: "many" }] })),
      (e: CairnError) => e.code === Code.InvalidArgument && /cpu_count/.test(e.message),
    );
  });
});

Deno.test("with no worker connected an unmatched action waits the grace period, then fails", async () => {
  await withScheduler(
    { supported_platform_properties: { os: "exact" }, no_matching_worker_grace_s: 0.15 },
    async (s) => {
      const started = Date.now();
      const handle = await s.addAction(actionRequest("a", { platform: [{ name: "os", value: "mac" }] }));
      const st = await final(handle);
      assert.ok(Date.now() - started >= 140);
      assert.equal(st.response?.status?.code, Code.FailedPrecondition);
      assert.match(st.response?.status?.message ?? "", /no worker is connected/);
    },
  );
});

Deno.test("an action queued before its worker connects runs when it does", async () => {
  await withScheduler(
    // A long grace (a loaded machine may be slow to connect the worker) and a short retention period, so
    // the scheduler's sweep runs every 25 ms while the action waits without a worker.
    {
      supported_platform_properties: { os: "exact" },
      no_matching_worker_grace_s: 30,
      retain_completed_for_s: 0.1,
    },
    async (s) => {
      const handle = await s.addAction(actionRequest("a", { platform: [{ name: "os", value: "mac" }] }));
      await sleep(100); // not waiting for an event: sweeps run while no matching worker is connected
      assert.equal(handle.current().stage, S.QUEUED);
      const worker = new FakeWorker(s, {
        properties: [{ name: "os", value: "mac" }],
        autoRespond: () => exit0(),
      });
      const st = await final(handle);
      assert.equal(st.response?.result?.exitCode, 0);
      assert.equal(worker.tasks.length, 1);
    },
  );
});

Deno.test("priority properties need the key, ignore properties need nothing", async () => {
  await withScheduler({ supported_platform_properties: { pool: "priority", path: "ignore" } }, async (s) => {
    const plain = new FakeWorker(s, { workerId: "plain" });
    await assert.rejects(
      s.addAction(actionRequest("a", { platform: [{ name: "pool", value: "x" }] })),
      (e: CairnError) => e.code === Code.FailedPrecondition && /pool=x \(priority\)/.test(e.message),
    );
    const pooled = new FakeWorker(s, { workerId: "pooled", properties: [{ name: "pool", value: "other" }] });
    const h = await s.addAction(actionRequest("b", { platform: [{ name: "pool", value: "x" }] }));
    const t = await pooled.nextTask();
    pooled.complete(t.operationId);
    await final(h);
    const h2 = await s.addAction(actionRequest("c", { platform: [{ name: "path", value: "/x" }] }));
    await until(() => plain.tasks.length + pooled.tasks.length === 2);
    for (const w of [plain, pooled]) for (const id of [...w.running.keys()]) w.complete(id);
    await final(h2);
  });
});

async function allocationOrder(strategy: SimpleSpec["allocation_strategy"]): Promise<string[]> {
  const order: string[] = [];
  await withScheduler({ ...(strategy ? { allocation_strategy: strategy } : {}) }, async (s) => {
    const a = new FakeWorker(s, { workerId: "a" });
    const b = new FakeWorker(s, { workerId: "b" });
    for (const key of ["1", "2", "3"]) {
      const h = await s.addAction(actionRequest(key));
      await until(() => a.running.size + b.running.size === 1);
      const w = a.running.size === 1 ? a : b;
      order.push(w.id);
      w.complete([...w.running.keys()][0]!);
      await final(h);
    }
  });
  return order;
}

Deno.test("least_recently_used spreads work, most_recently_used reuses the same worker", async () => {
  assert.deepEqual(await allocationOrder(undefined), ["a", "b", "a"]);
  assert.deepEqual(await allocationOrder("least_recently_used"), ["a", "b", "a"]);
  assert.deepEqual(await allocationOrder("most_recently_used"), ["b", "b", "b"]);
});

Deno.test("a worker without keep-alive is removed and its action requeued elsewhere", async () => {
  await withScheduler({ worker_timeout_s: 0.15 }, async (s) => {
    const silent = new FakeWorker(s, { workerId: "silent" });
    const handle = await s.addAction(actionRequest("a"));
    await silent.nextTask();
    const alive = new FakeWorker(s, { workerId: "alive" });
    const beat = setInterval(() => alive.session.keepAlive(), 30);
    try {
      const t = await alive.nextTask(2000);
      assert.equal(t.operationId, handle.name);
      assert.match(silent.disconnectReason ?? "", /keep-alive/);
      alive.complete(t.operationId);
      const st = await final(handle);
      assert.equal(st.response?.result?.exitCode, 0);
    } finally {
      clearInterval(beat);
    }
  });
});

Deno.test("more than max_job_retries failures complete the action with the last error", async () => {
  await withScheduler({ max_job_retries: 2 }, async (s) => {
    const worker = new FakeWorker(s);
    const handle = await s.addAction(actionRequest("a"));
    for (let i = 1; i <= 3; i++) {
      const t = await worker.nextTask();
      worker.fail(t.operationId, new CairnError(Code.Internal, `sandbox exploded #${i}`));
    }
    const st = await final(handle);
    assert.equal(st.response?.status?.code, Code.Internal);
    assert.match(st.response?.status?.message ?? "", /failed 3 times.*sandbox exploded #3/);
    assert.equal(worker.tasks.length, 3);
  });
});

Deno.test("a disconnected worker's actions are requeued and count as attempts", async () => {
  await withScheduler({ max_job_retries: 1 }, async (s) => {
    const handle = await s.addAction(actionRequest("a"));
    const w1 = new FakeWorker(s, { workerId: "w1" });
    await w1.nextTask();
    w1.session.disconnected("stream closed");
    const w2 = new FakeWorker(s, { workerId: "w2" });
    await w2.nextTask();
    w2.session.disconnected("stream closed");
    const st = await final(handle);
    assert.equal(st.response?.status?.code, Code.Unavailable);
    assert.match(st.response?.status?.message ?? "", /w2.*disconnected: stream closed/);
  });
});

Deno.test("cancelling an executing operation kills it on the worker and frees the slot", async () => {
  await withScheduler({}, async (s) => {
    const worker = new FakeWorker(s);
    const a = await s.addAction(actionRequest("a"));
    const b = await s.addAction(actionRequest("b"));
    const t = await worker.nextTask();
    assert.equal(t.operationId, a.name);
    assert.ok(await s.cancelOperation(a.name));
    const st = await final(a);
    assert.equal(st.response?.status?.code, Code.Cancelled);
    assert.deepEqual(worker.kills, [a.name]);
    const next = await worker.nextTask();
    assert.equal(next.operationId, b.name);
    assert.equal(await s.cancelOperation(a.name), false);
    b.close();
  });
});

Deno.test("cancelling one of two merged callers leaves the action running for the other", async () => {
  await withScheduler({}, async (s) => {
    const worker = new FakeWorker(s);
    const a = await s.addAction(actionRequest("m"));
    const b = await s.addAction(actionRequest("m"));
    const t = await worker.nextTask();
    await s.cancelOperation(b.name);
    assert.equal((await final(b)).response?.status?.code, Code.Cancelled);
    assert.deepEqual(worker.kills, []);
    worker.complete(t.operationId, 0);
    assert.equal((await final(a)).response?.result?.exitCode, 0);
  });
});

Deno.test("a result for an operation the worker was not given is rejected and changes nothing", async () => {
  await withScheduler({}, async (s) => {
    const worker = new FakeWorker(s);
    const other = new FakeWorker(s, { workerId: "other" });
    const handle = await s.addAction(actionRequest("a"));
    await until(() => worker.running.size + other.running.size === 1);
    const owner = worker.running.size === 1 ? worker : other;
    const stranger = owner === worker ? other : worker;
    assert.throws(
      () => stranger.session.result(handle.name, { response: exit0() }),
      (e: CairnError) => e.code === Code.FailedPrecondition && /not running/.test(e.message),
    );
    assert.throws(
      () => owner.session.result("main/operations/nope", { response: exit0() }),
      (e: CairnError) => e instanceof CairnError && e.code === Code.FailedPrecondition,
    );
    assert.equal((await s.findOperation(handle.name))?.stage, S.EXECUTING);
    owner.complete(handle.name, 0);
    assert.equal((await final(handle)).response?.result?.exitCode, 0);
  });
});

Deno.test("a worker with a property the scheduler does not know is rejected", async () => {
  await withScheduler({ supported_platform_properties: { cpu_count: "minimum" } }, (s) => {
    assert.throws(
      () => new FakeWorker(s, { properties: [{ name: "gpu", value: "1" }] }),
      (e: CairnError) => e.code === Code.InvalidArgument && /"gpu"/.test(e.message),
    );
    assert.throws(
      () => new FakeWorker(s, { properties: [{ name: "cpu_count", value: "lots" }] }),
      (e: CairnError) => e.code === Code.InvalidArgument && /cpu_count/.test(e.message),
    );
    return Promise.resolve();
  });
});

Deno.test("a going-away worker gets no new work", async () => {
  await withScheduler({}, async (s) => {
    const leaving = new FakeWorker(s, { workerId: "leaving", maxInflightTasks: 0 });
    leaving.session.goingAway();
    const staying = new FakeWorker(s, { workerId: "staying" });
    const h = await s.addAction(actionRequest("a"));
    const t = await staying.nextTask();
    staying.complete(t.operationId);
    await final(h);
    assert.equal(leaving.tasks.length, 0);
  });
});

Deno.test("an action with no listening client is dropped after client_action_timeout_s", async () => {
  await withScheduler({ client_action_timeout_s: 0.1 }, async (s) => {
    const worker = new FakeWorker(s, { ackKills: true });
    const handle = await s.addAction(actionRequest("a"));
    await worker.nextTask();
    handle.close();
    await until(() => worker.kills.length > 0);
    let st = await s.findOperation(handle.name);
    for (const deadline = Date.now() + 30_000; !st?.done && Date.now() < deadline; await sleep(10)) {
      st = await s.findOperation(handle.name);
    }
    assert.equal(st?.response?.status?.code, Code.DeadlineExceeded);
    assert.deepEqual(worker.kills, [handle.name]);
  });
});

Deno.test("completed operations stay queryable for retain_completed_for_s, then vanish", async () => {
  // 1 s: long enough that the checks right after completion see the operation on a loaded machine.
  await withScheduler({ retain_completed_for_s: 1 }, async (s) => {
    new FakeWorker(s, { autoRespond: exit0 });
    const handle = await s.addAction(actionRequest("a"));
    await final(handle);
    assert.equal((await s.findOperation(handle.name))?.done, true);
    const again = await s.waitOperation(handle.name);
    assert.equal((await final(again!)).name, handle.name);
    const deadline = Date.now() + 30_000;
    while (await s.findOperation(handle.name) !== undefined && Date.now() < deadline) await sleep(10);
    assert.equal(await s.findOperation(handle.name), undefined);
    assert.equal(await s.waitOperation(handle.name), undefined);
  });
});

Deno.test("an executing action without progress is killed and requeued", async () => {
  await withScheduler({ max_action_executing_timeout_s: 0.5 }, async (s) => {
    const stuck = new FakeWorker(s, { workerId: "stuck", ackKills: false });
    const handle = await s.addAction(actionRequest("a"));
    await stuck.nextTask();
    const fresh = new FakeWorker(s, { workerId: "fresh" });
    const t = await fresh.nextTask();
    assert.deepEqual(stuck.kills, [handle.name]);
    fresh.complete(t.operationId, 0);
    assert.equal((await final(handle)).response?.result?.exitCode, 0);
  });
});

Deno.test("progress reports keep an executing action alive", async () => {
  // Progress every 200 ms for 3 s against a 2 s timeout: without the reports the action would be killed,
  // and a loaded machine has 1.8 s of slack between two reports.
  await withScheduler({ max_action_executing_timeout_s: 2 }, async (s) => {
    const worker = new FakeWorker(s);
    const handle = await s.addAction(actionRequest("a"));
    const t = await worker.nextTask();
    for (let i = 0; i < 15; i++) {
      await sleep(200); // pacing the reports, not waiting for an event
      worker.session.progress(t.operationId);
    }
    assert.deepEqual(worker.kills, []);
    worker.complete(t.operationId);
    await final(handle);
  });
});

Deno.test("a worker registering again under its id replaces the old registration", async () => {
  await withScheduler({}, async (s) => {
    const old = new FakeWorker(s, { workerId: "w" });
    const handle = await s.addAction(actionRequest("a"));
    await old.nextTask();
    const again = new FakeWorker(s, { workerId: "w" });
    assert.match(old.disconnectReason ?? "", /registered again/);
    const t = await again.nextTask();
    old.session.disconnected("late close"); // the old stream ending must not remove the new registration
    again.complete(t.operationId);
    assert.equal((await final(handle)).response?.result?.exitCode, 0);
  });
});
