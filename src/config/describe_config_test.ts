import assert from "node:assert/strict";
import { describeConfig } from "./describe_config.ts";
import { parseConfig } from "./load_config.ts";

Deno.test("describeConfig shows the nested store tree, schedulers, workers and services per instance", () => {
  const config = parseConfig(
    `{
      stores: [
        { name: "CAS", verify: { verify_size: true, backend: { fast_slow: {
          fast: { memory: { eviction_policy: { max_bytes: "1gb" } } },
          slow: { filesystem: { content_path: "/c", temp_path: "/t" } } } } } },
        { name: "AC", existence_cache: { backend: { ref_store: { name: "CAS" } }, eviction_policy: { max_seconds: 1800 } } },
      ],
      schedulers: [{ name: "MAIN", simple: { supported_platform_properties: { cpu_count: "minimum" } } }],
      workers: [{ local: { worker_api_endpoint: { uri: "grpc://127.0.0.1:50061" }, cas_fast_slow_store: "CAS",
        work_directory: "/w", platform_properties: { OSFamily: { values: ["linux"] } } } }],
      servers: [{ name: "public", listener: { http: { socket_address: "127.0.0.1:50051" } },
        services: { cas: { main: { cas_store: "CAS" } }, execution: [{ cas_store: "CAS", scheduler: "MAIN" }], health: {} } }],
    }`,
    "d.json5",
    {},
  );
  const text = describeConfig(config);
  const expectedLines = [
    "Stores (2):",
    "  CAS: verify (verify_size=true)",
    "    backend: fast_slow",
    "      fast: memory (eviction_policy.max_bytes=1 GB)",
    '      slow: filesystem (content_path="/c", temp_path="/t")',
    "  AC: existence_cache (eviction_policy.max_seconds=30m)",
    "    backend: ref_store → CAS",
    "Schedulers (1):",
    "  MAIN: simple (supported_platform_properties={cpu_count: minimum})",
    "Workers (1):",
    "  workers[0]: local",
    '    cas_fast_slow_store="CAS"',
    'servers[0] "public": http socket_address="127.0.0.1:50051"',
    '    cas: instance "main" (cas_store="CAS")',
    '    execution: instance "" (cas_store="CAS", scheduler="MAIN")',
    "    health",
  ];
  for (const line of expectedLines) {
    assert.ok(text.includes(line), `missing line ${JSON.stringify(line)} in:\n${text}`);
  }
});

Deno.test("describeConfig never prints credentials (worker tokens, auth hashes, grpc store headers)", () => {
  const config = parseConfig(
    JSON.stringify({
      stores: [{
        name: "R",
        grpc: {
          endpoints: [{ address: "grpc://h:1" }],
          store_type: "cas",
          headers: { authorization: "Bearer header-secret" },
        },
      }],
      schedulers: [{ name: "S", simple: {} }],
      workers: [{
        local: {
          worker_api_endpoint: { uri: "grpc://h:2", worker_token: "worker-secret-0123456789" },
          cas_fast_slow_store: "R",
          work_directory: "/w",
        },
      }],
      servers: [{
        listener: { http: { socket_address: "127.0.0.1:0" } },
        services: { worker_api: { scheduler: "S", worker_token: "server-secret-0123456789" } },
        auth: { users: [{ name: "ci", token_sha256: "a".repeat(64), permissions: { "*": ["read"] } }] },
      }],
    }),
    "c.json5",
  );
  const text = describeConfig(config);
  for (const secret of ["header-secret", "worker-secret", "server-secret", "a".repeat(64)]) {
    assert.ok(!text.includes(secret), `${secret} printed:\n${text}`);
  }
  assert.match(text, /worker_token=\(redacted\)/);
  assert.match(text, /auth: anonymous clients none; users "ci"/);
});
