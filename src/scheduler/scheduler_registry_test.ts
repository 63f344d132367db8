import assert from "node:assert/strict";
import { MemoryStore } from "../store/memory_store.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { CacheLookupScheduler } from "./cache_lookup_scheduler.ts";
import { PropertyModifierScheduler } from "./property_modifier_scheduler.ts";
import { createSchedulers } from "./scheduler_registry.ts";
import { SimpleScheduler } from "./simple_scheduler.ts";

const stores = {
  get(name: string): StoreDriver {
    if (name === "AC") return new MemoryStore();
    throw new CairnError(Code.InvalidArgument, `Unknown store "${name}"`);
  },
};

Deno.test("config kinds build the matching schedulers, wrappers expose the nested worker side", async () => {
  const set = createSchedulers([
    { name: "plain", simple: { supported_platform_properties: { cpu_count: "minimum" } } },
    {
      name: "wrapped",
      cache_lookup: {
        ac_store: "AC",
        scheduler: { property_modifier: { modifications: [{ remove: "x" }], scheduler: { simple: {} } } },
      },
    },
  ], { stores });
  try {
    assert.ok(set.get("plain").actions instanceof SimpleScheduler);
    assert.equal(set.get("plain").workers, set.get("plain").actions);
    const wrapped = set.get("wrapped");
    assert.ok(wrapped.actions instanceof CacheLookupScheduler);
    assert.ok(wrapped.workers instanceof SimpleScheduler);
    assert.deepEqual(set.names(), ["plain", "wrapped"]);
    assert.throws(() => set.get("nope"), /Unknown scheduler "nope": known schedulers are "plain", "wrapped"/);
    assert.ok(new PropertyModifierScheduler([], wrapped.actions));
  } finally {
    await set.close();
  }
});

Deno.test("grpc is not yet supported, unknown kinds and bad fields are named", () => {
  assert.throws(
    () => createSchedulers({ up: { grpc: {} } }, { stores }),
    (e: CairnError) => e.code === Code.Unimplemented && /"grpc" is not yet supported/.test(e.message),
  );
  assert.throws(
    () => createSchedulers({ odd: { fancy: {} } as never }, { stores }),
    /unknown kind "fancy"/,
  );
  assert.throws(
    () =>
      createSchedulers({ s: { simple: { supported_platform_properties: { a: "sometimes" as never } } } }, {
        stores,
      }),
    /supported_platform_properties\.a is "sometimes"/,
  );
  assert.throws(
    () =>
      createSchedulers({ c: { cache_lookup: { ac_store: "MISSING", scheduler: { simple: {} } } } }, {
        stores,
      }),
    /Unknown store "MISSING"/,
  );
});
