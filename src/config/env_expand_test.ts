import assert from "node:assert/strict";
import { expandEnv } from "./env_expand.ts";
import { parseConfig } from "./load_config.ts";
import { ConfigError } from "./config_error.ts";

Deno.test("expands ${VAR} and ${VAR:-default}", () => {
  const env = { HOST: "cas", EMPTY: "" };
  assert.deepEqual(expandEnv("grpc://${HOST}:50051", env), { ok: true, value: "grpc://cas:50051" });
  assert.deepEqual(expandEnv("${PORT:-50051}", env), { ok: true, value: "50051" });
  assert.deepEqual(expandEnv("${EMPTY:-x}", env), { ok: true, value: "x" });
  assert.deepEqual(expandEnv("${EMPTY-x}", env), { ok: true, value: "" });
  assert.deepEqual(expandEnv("cas/{{ $i }}/", env), { ok: true, value: "cas/{{ $i }}/" });
});

Deno.test("an unset variable without default is reported by name", () => {
  assert.deepEqual(expandEnv("${NOPE}/x", {}), { ok: false, missing: "NOPE" });
});

Deno.test("config: missing variable error names the variable and the JSON path", () => {
  const text =
    `{ stores: [{ name: "F", filesystem: { content_path: "\${CAIRN_DATA}/c", temp_path: "/t" } }] }`;
  assert.throws(() => parseConfig(text, "cas.json5", {}), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(
      err.message,
      "cas.json5: stores[0].filesystem.content_path: environment variable CAIRN_DATA is not set " +
        "(write ${CAIRN_DATA:-default} to give a default)",
    );
    return true;
  });
  const ok = parseConfig(text, "cas.json5", { CAIRN_DATA: "/srv" });
  assert.deepEqual(ok.stores[0], { name: "F", filesystem: { content_path: "/srv/c", temp_path: "/t" } });
});

Deno.test("config: expanded strings feed sizes, durations, numbers and booleans", () => {
  const text = `{ stores: [{ name: "M", memory: { eviction_policy: {
    max_bytes: "\${MAX:-2gb}", max_seconds: "\${AGE:-1h}", max_count: "\${COUNT}" } } },
    { name: "V", verify: { backend: { ref_store: { name: "M" } }, verify_size: "\${VS:-true}" } }] }`;
  const config = parseConfig(text, "t.json5", { COUNT: "7" });
  assert.deepEqual(config.stores[0], {
    name: "M",
    memory: { eviction_policy: { max_bytes: 2_000_000_000, max_seconds: 3600, max_count: 7 } },
  });
  assert.deepEqual(config.stores[1], {
    name: "V",
    verify: { backend: { ref_store: { name: "M" } }, verify_size: true },
  });
});
