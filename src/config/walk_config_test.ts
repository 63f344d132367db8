import assert from "node:assert/strict";
import JSON5 from "json5";
import { parseConfig } from "./load_config.ts";
import { ROOT } from "./nativelink_schema.ts";
import { type Reference, validate } from "./validate.ts";
import {
  schedulerKindsIn,
  schedulerStoreRefs,
  serverStoreRefs,
  storeKindsIn,
  storeRefsIn,
  walkConfig,
} from "./walk_config.ts";

const TEXT = `{
  stores: [
    { name: "AC", memory: {} },
    { name: "FS", filesystem: { content_path: "/tmp/c", temp_path: "/tmp/t" } },
    { name: "CAS", fast_slow: {
        fast: { verify: { backend: { filesystem: { content_path: "/tmp/f", temp_path: "/tmp/g" } } } },
        slow: { shard: { stores: [{ store: { ref_store: { name: "FS" } } }, { store: { ref_store: { name: "AC" } } }] } },
    } },
  ],
  schedulers: [
    { name: "S", cache_lookup: { ac_store: "AC", scheduler: {
        property_modifier: { modifications: [], scheduler: { simple: { supported_platform_properties: { cpu: "minimum" } } } },
    } } },
  ],
  servers: [{ listener: { http: { socket_address: ":0" } }, services: {
    cas: [{ cas_store: "CAS" }], ac: [{ ac_store: "AC" }], execution: [{ cas_store: "CAS", scheduler: "S" }],
  } }],
}`;

Deno.test("walk_config: store refs, nested kinds and scheduler stores follow the schema", () => {
  const config = parseConfig(TEXT, "walk.json5", {});
  const cas = config.stores[2]!;
  assert.deepEqual(storeRefsIn(cas), ["FS", "AC"]);
  assert.deepEqual(storeKindsIn(cas).map(([kind]) => kind), [
    "fast_slow",
    "verify",
    "filesystem",
    "shard",
    "ref_store",
    "ref_store",
  ]);
  assert.deepEqual(schedulerStoreRefs(config.schedulers[0]!), ["AC"]);
  assert.deepEqual(serverStoreRefs(config.servers[0]!), ["CAS", "AC", "CAS"]);
  assert.deepEqual(schedulerKindsIn(config.schedulers[0]!).map(([kind]) => kind), [
    "cache_lookup",
    "property_modifier",
    "simple",
  ]);
});

Deno.test("walk_config: every reference the validator collects, with the same JSON path", () => {
  const refs: Reference[] = [];
  validate(ROOT, JSON5.parse(TEXT), "", {
    source: "walk.json5",
    env: {},
    refs,
    warn: () => {},
    baseDir: "/",
    paths: [],
  });
  const walked: Reference[] = [];
  walkConfig(parseConfig(TEXT, "walk.json5", {}), {
    ref: (to, name, path) => walked.push({ to, name, path }),
  });
  const key = (r: Reference) => `${r.to} ${r.name} ${r.path}`;
  assert.deepEqual(walked.map(key).sort(), refs.map(key).sort());
  assert.ok(walked.some((r) => r.path === "servers[0].services.execution[0].scheduler" && r.name === "S"));
});
