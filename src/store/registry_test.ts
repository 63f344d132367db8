import assert from "node:assert/strict";
import { CairnError, Code } from "../util/error.ts";
import { createMemoryStore } from "./memory_store.ts";
import { createStoreRegistry, registerStoreKind, STORE_KINDS } from "./registry.ts";
import { WrapperStore } from "./helpers.ts";

Deno.test("registry: an unknown kind lists the valid kinds", () => {
  const registry = createStoreRegistry();
  assert.throws(() => registry.build("cas", { memroy: {} }), (err: unknown) => {
    assert.ok(err instanceof CairnError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(
      err.message,
      /^Cannot open store "cas": unknown store kind "memroy"; valid kinds are memory, filesystem/,
    );
    return true;
  });
});

Deno.test("registry: a known kind without an implementation is 'not yet supported'", () => {
  const registry = createStoreRegistry();
  const missing = STORE_KINDS.filter((k) => !registry.kinds().includes(k));
  assert.ok(missing.length > 0 || registry.kinds().length === STORE_KINDS.length);
  for (const kind of missing) {
    assert.throws(() => registry.build("cas", { [kind]: {} }), (err: unknown) => {
      assert.ok(err instanceof CairnError);
      assert.equal(err.code, Code.Unimplemented);
      assert.equal(err.message, `Cannot open store "cas": ${kind} is not yet supported`);
      return true;
    });
  }
});

Deno.test("registry: malformed specs are named with their path", () => {
  const registry = createStoreRegistry();
  assert.throws(() => registry.build("x", "memory"), /Cannot open store "x": a store spec must be an object/);
  assert.throws(() => registry.build("x", {}), /the store spec is empty; expected one of memory/);
  assert.throws(
    () => registry.build("x", { memory: {}, noop: {} }),
    /names exactly one kind, got memory, noop/,
  );
  assert.throws(() => registry.build("x", { memory: [] }), /memory settings must be an object/);
  assert.throws(
    () =>
      registry.build("x", {
        verify: { backend: { verify: { backend: { memory: { eviction_policy: 5 } } } } },
      }),
    /^CairnError: Cannot open store "x": verify\.backend\.verify\.backend: eviction_policy must be an object, got 5$/m,
  );
  assert.throws(
    () => registry.build("x", { noop: { extra: 1 } }),
    /unknown noop field "extra"; valid fields are \(none\)/,
  );
});

Deno.test("registry: register adds a kind whose nested specs are built recursively", async () => {
  const registry = createStoreRegistry();
  class Tagged extends WrapperStore {
    override readonly kind = "tagged";
  }
  registry.register("tagged", (fields, ctx) => new Tagged(ctx.build(fields.backend, "backend")));
  const store = registry.build("t", { tagged: { backend: { tagged: { backend: { memory: {} } } } } });
  assert.equal(store.kind, "tagged");
  assert.equal(((store as Tagged).inner as Tagged).inner.kind, "memory");
  assert.ok(!createStoreRegistry().kinds().includes("tagged"), "register on one registry does not leak");
  registerStoreKind("tagged_global", () => createMemoryStore());
  assert.ok(createStoreRegistry().kinds().includes("tagged_global"));
  await store.close?.();
});

Deno.test("registry: each kind's fields come from the config schema; refused fields are refused by name", () => {
  const registry = createStoreRegistry();
  assert.throws(
    () => registry.build("x", { memory: { eviction_policy: {}, bogus: 1 } }),
    (err: unknown) => {
      assert.ok(err instanceof CairnError);
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(
        err.message,
        `Cannot open store "x": unknown memory field "bogus"; valid fields are eviction_policy`,
      );
      return true;
    },
  );
  assert.throws(
    () =>
      registry.build("x", { filesystem: { content_path: "/a", temp_path: "/b", evict_page_cache: true } }),
    (err: unknown) => {
      assert.ok(err instanceof CairnError);
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(
        err.message,
        `Cannot open store "x": filesystem field "evict_page_cache" is not supported by Cairn yet`,
      );
      return true;
    },
  );
  // The old kind name is checked against the fields of the kind it became.
  assert.throws(
    () => registry.build("x", { experimental_s3_store: { bucket: "b", regoin: "r" } }),
    /unknown experimental_s3_store field "regoin"; valid fields are provider, region, bucket/,
  );
});
