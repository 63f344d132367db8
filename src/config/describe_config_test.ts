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
