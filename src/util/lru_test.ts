import assert from "node:assert/strict";
import { LruIndex } from "./lru.ts";

Deno.test("lru: size eviction goes down to the low watermark, oldest first", () => {
  const evicted: string[] = [];
  const lru = new LruIndex<number>({ maxBytes: 100, evictBytes: 30, maxSeconds: 0, maxCount: 0 }, {
    onEvict: (k) => evicted.push(k),
  });
  for (let i = 0; i < 10; i++) lru.set(`k${i}`, i, 10);
  assert.deepEqual(evicted, []);
  lru.get("k0");
  lru.set("k10", 10, 10); // 110 > 100 → down to 70
  assert.deepEqual(evicted, ["k1", "k2", "k3", "k4"]);
  assert.equal(lru.bytes, 70);
  assert.deepEqual([...lru.keys()], ["k5", "k6", "k7", "k8", "k9", "k0", "k10"]);
});

Deno.test("lru: replacing a key adjusts bytes; delete does not call onEvict", () => {
  let calls = 0;
  const lru = new LruIndex<string>(undefined, { onEvict: () => calls++ });
  lru.set("a", "x", 10);
  lru.set("a", "y", 4);
  assert.equal(lru.bytes, 4);
  assert.equal(lru.peek("a"), "y");
  assert.equal(lru.delete("a"), "y");
  assert.equal(lru.size, 0);
  assert.equal(calls, 0);
});

Deno.test("lru: max_seconds and max_count", () => {
  let now = 0;
  const lru = new LruIndex<number>({ maxBytes: 0, evictBytes: 0, maxSeconds: 5, maxCount: 2 }, {
    now: () => now,
  });
  lru.set("a", 1, 1);
  lru.set("b", 2, 1);
  lru.set("c", 3, 1);
  assert.deepEqual([...lru.keys()], ["b", "c"]);
  now = 4000;
  assert.equal(lru.get("b"), 2);
  now = 6000;
  assert.equal(lru.peek("c"), undefined, "c expired");
  assert.equal(lru.peek("b"), 2);
  lru.set("old", 9, 1, -10_000);
  assert.equal(lru.peek("old"), undefined, "inserted already expired");
});
