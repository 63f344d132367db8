import assert from "node:assert/strict";
import { CairnError, Code, quoteClient } from "./error.ts";
import { checkMessageSize, MAX_DECODED_MESSAGE_BYTES, sliceByBytes, TreeBudget } from "./limits.ts";

const isExhausted = (e: unknown) => e instanceof CairnError && e.code === Code.ResourceExhausted;

Deno.test("checkMessageSize refuses digests above the cap, naming the digest and the cap", () => {
  checkMessageSize("Tree", { hash: "a", size: MAX_DECODED_MESSAGE_BYTES });
  assert.throws(
    () => checkMessageSize("Tree", { hash: "a", size: MAX_DECODED_MESSAGE_BYTES + 1 }),
    (e: unknown) => {
      assert.ok(isExhausted(e));
      assert.match((e as Error).message, new RegExp(`Tree a-${MAX_DECODED_MESSAGE_BYTES + 1}.*limit of`));
      return true;
    },
  );
});

Deno.test("TreeBudget fails once the walk passes its limit", () => {
  const budget = new TreeBudget("walk", 100);
  budget.charge(60);
  budget.charge(40);
  assert.throws(() => budget.charge(1), isExhausted);
});

Deno.test("sliceByBytes bounds each slice in count and bytes; a large item gets a slice of its own", () => {
  const items = [10, 10, 10, 50, 200, 5, 5].map((size) => ({ size }));
  const slices = [...sliceByBytes(items, 3, 60)].map((s) => s.map((i) => i.size));
  assert.deepEqual(slices, [[10, 10, 10], [50], [200], [5, 5]]);
});

Deno.test("quoteClient cuts long client input to 200 characters and notes the length", () => {
  assert.equal(quoteClient("main"), '"main"');
  const q = quoteClient("x".repeat(100_000));
  assert.ok(q.length < 240);
  assert.match(q, /… \(100000 characters\)$/);
});
