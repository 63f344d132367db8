import assert from "node:assert/strict";
import { FakeWorker } from "../../tests/fixtures/fake_worker.ts";
import { modifyPlatform, PropertyModifierScheduler } from "./property_modifier_scheduler.ts";
import { SimpleScheduler } from "./simple_scheduler.ts";
import { actionRequest } from "../../tests/fixtures/test_actions.ts";

Deno.test("modifications add, remove and replace properties in order", () => {
  const out = modifyPlatform(
    [{ name: "os", value: "mac" }, { name: "gpu", value: "1" }, { name: "pool", value: "a" }],
    [
      { add: { name: "os", value: "linux" } },
      { remove: "gpu" },
      { replace: { name: "pool", value: "a", new_name: "queue", new_value: "fast" } },
      { replace: { name: "pool", value: "zzz", new_name: "never" } },
      { add: { name: "arch", value: "x86" } },
    ],
  );
  assert.deepEqual(out, [
    { name: "arch", value: "x86" },
    { name: "os", value: "linux" },
    { name: "queue", value: "fast" },
  ]);
});

Deno.test("the nested scheduler matches on the modified properties", async () => {
  const inner = new SimpleScheduler({ supported_platform_properties: { os: "exact" } });
  const s = new PropertyModifierScheduler(
    [{ add: { name: "os", value: "linux" } }, { remove: "gpu" }],
    inner,
  );
  try {
    const worker = new FakeWorker(inner, { properties: [{ name: "os", value: "linux" }] });
    // "gpu" is unknown to the nested scheduler: only removing it lets the action through.
    const handle = await s.addAction(actionRequest("a", { platform: [{ name: "gpu", value: "1" }] }));
    const task = await worker.nextTask();
    assert.deepEqual(task.platform, [{ name: "os", value: "linux" }]);
    worker.complete(task.operationId, 0);
    for await (const st of handle) if (st.done) assert.equal(st.response?.result?.exitCode, 0);
    assert.equal((await s.findOperation(handle.name))?.done, true);
  } finally {
    await s.close();
  }
});
