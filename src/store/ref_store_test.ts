import assert from "node:assert/strict";
import { Code } from "../util/error.ts";
import { assertRejectsWithCode, runStoreConformance } from "./conformance_suite.ts";
import { has, putBytes } from "./helpers.ts";
import { createStoreManager } from "./store_manager.ts";

runStoreConformance("ref_store", async () => {
  const stores = await createStoreManager({ REF: { ref_store: { name: "MAIN" } }, MAIN: { memory: {} } });
  return { store: stores.get("REF"), cleanup: () => stores.close() };
});

Deno.test("ref_store: resolves names declared later and shares the target's data", async () => {
  const stores = await createStoreManager([
    { name: "AC", spec: { verify: { backend: { ref_store: { name: "MAIN" } }, verify_size: true } } },
    { name: "MAIN", spec: { memory: {} } },
  ]);
  try {
    await putBytes(stores.get("AC"), "k", new Uint8Array(4));
    assert.equal(await has(stores.get("MAIN"), "k"), 4);
  } finally {
    await stores.close();
  }
});

Deno.test("ref_store: an unknown name or a cycle fails at startup", async () => {
  const err = await assertRejectsWithCode(
    createStoreManager({ AC: { ref_store: { name: "MISSING" } }, CAS: { memory: {} } }),
    Code.InvalidArgument,
  );
  assert.match(
    err.message,
    /Cannot open store "AC": ref_store names "MISSING", which is not a defined store/,
  );
  assert.match(err.message, /defined stores are AC, CAS/);
  const cycle = await assertRejectsWithCode(
    createStoreManager({ A: { ref_store: { name: "B" } }, B: { ref_store: { name: "A" } } }),
    Code.InvalidArgument,
  );
  assert.match(cycle.message, /refers to itself/);
});
