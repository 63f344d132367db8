import assert from "node:assert/strict";
import { type Infer, s } from "./schema.ts";
import { validate } from "./validate.ts";
import type { CairnConfig, StoreKinds, StoreSpec } from "./types.ts";

/** Compiles only when `A` and `B` are the same type. */
type Exact<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function sameType<_T extends true>(): void {}

const node = s.object({
  name: s.string(),
  size: s.optional(s.size()),
  mode: s.withDefault(s.enum("a", "b"), "a"),
  later: s.optional(s.unsupported("not yet")),
  list: s.optional(s.array(s.object({ store: s.ref("store") }))),
  kind: s.optional(s.variant("thing", { on: null, with: s.object({ n: s.int() }), off: s.unsupported() })),
});

Deno.test("schema: the inferred type has required, optional and defaulted fields, and no refused ones", () => {
  type T = Infer<typeof node>;
  sameType<
    Exact<
      T,
      {
        name: string;
        mode: "a" | "b";
        size?: number;
        list?: { store: string }[];
        kind?: "on" | { with: { n: number } };
      }
    >
  >();
  const ctx = { source: "t", env: {}, refs: [], warn: () => {}, baseDir: "/", paths: [] };
  const value = validate(node, { name: "x", size: "1kb" }, "", ctx) as T;
  assert.deepEqual(value, { name: "x", size: 1000, mode: "a" });
  assert.throws(
    () => validate(node, { name: "x", later: 1 }, "", ctx),
    /later: not supported by Cairn yet \(not yet\)/,
  );
});

Deno.test("schema: config types are derived, nested stores included", () => {
  sameType<Exact<StoreKinds["verify"]["backend"], StoreSpec>>();
  sameType<Exact<CairnConfig["stores"][number]["name"], string>>();
  // Refused kinds are not store kinds.
  sameType<Exact<"cache_metrics" extends keyof StoreKinds ? true : false, false>>();
  const spec: StoreSpec = { fast_slow: { fast: { memory: {} }, slow: { ref_store: { name: "S" } } } };
  assert.ok("fast_slow" in spec);
});
