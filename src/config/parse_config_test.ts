import assert from "node:assert/strict";
import { ConfigError } from "./config_error.ts";
import { configBaseDir, configPathFields, parseConfig } from "./load_config.ts";
import { findStore, storeSpecsByName } from "./find_spec.ts";
import { specKind } from "./spec_kind.ts";

const NO_ENV = {};

function errorOf(text: string, source = "cas.json5"): string {
  try {
    parseConfig(text, source, NO_ENV);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.ok(!err.message.includes("\n"), "message is one line");
    return err.message;
  }
  throw new Error("expected the config to be rejected");
}

const ARRAY_FORM = `{
  stores: [
    { name: "CAS", filesystem: { content_path: "/d/c", temp_path: "/d/t", eviction_policy: { max_bytes: "10gb" } } },
    { name: "AC", memory: { eviction_policy: { max_bytes: 1000000 } } },
  ],
  schedulers: [{ name: "MAIN", simple: { supported_platform_properties: { cpu_count: "minimum" } } }],
  servers: [{
    listener: { http: { socket_address: "0.0.0.0:50051" } },
    services: {
      cas: [{ instance_name: "main", cas_store: "CAS" }],
      ac: [{ instance_name: "main", ac_store: "AC" }],
      execution: [{ instance_name: "main", cas_store: "CAS", scheduler: "MAIN" }],
      capabilities: [{ instance_name: "main", remote_execution: { scheduler: "MAIN" } }],
      bytestream: [{ instance_name: "main", cas_store: "CAS" }],
      worker_api: { scheduler: "MAIN" },
    },
  }],
}`;

const MAP_FORM = `{
  stores: {
    CAS: { filesystem: { content_path: "/d/c", temp_path: "/d/t", eviction_policy: { max_bytes: 10000000000 } } },
    AC: { memory: { eviction_policy: { max_bytes: "1mb" } } },
  },
  schedulers: { MAIN: { simple: { supported_platform_properties: { cpu_count: "minimum" } } } },
  servers: [{
    listener: { http: { socket_address: "0.0.0.0:50051" } },
    services: {
      cas: { main: { cas_store: "CAS" } },
      ac: { main: { ac_store: "AC" } },
      execution: { main: { cas_store: "CAS", scheduler: "MAIN" } },
      capabilities: { main: { remote_execution: { scheduler: "MAIN" } } },
      bytestream: { cas_stores: { main: "CAS" } },
      worker_api: { scheduler: "MAIN" },
    },
  }],
}`;

Deno.test("array and older map forms normalize to the same canonical config", () => {
  const fromArrays = parseConfig(ARRAY_FORM, "a.json5", NO_ENV);
  const fromMaps = parseConfig(MAP_FORM, "m.json5", NO_ENV);
  assert.deepEqual(fromMaps, fromArrays);
  assert.deepEqual(fromArrays.stores[0], {
    name: "CAS",
    filesystem: { content_path: "/d/c", temp_path: "/d/t", eviction_policy: { max_bytes: 10_000_000_000 } },
  });
  assert.deepEqual(fromArrays.servers[0]!.services.cas, [{ instance_name: "main", cas_store: "CAS" }]);
  assert.deepEqual(fromArrays.workers, []);
});

Deno.test("instance_name defaults to empty; capabilities {} and [] both enable the service", () => {
  const config = parseConfig(
    `{ stores: [{ name: "S", memory: {} }], servers: [
      { listener: { http: { socket_address: ":1" } }, services: { cas: [{ cas_store: "S" }], capabilities: {} } },
      { listener: { http: { socket_address: ":2" } }, services: { capabilities: [], fetch: {}, health: {} } },
    ] }`,
    "c.json5",
    NO_ENV,
  );
  assert.deepEqual(config.servers[0]!.services, {
    cas: [{ instance_name: "", cas_store: "S" }],
    capabilities: [],
  });
  assert.deepEqual(config.servers[1]!.services, { capabilities: [], fetch: [], health: {} });
});

Deno.test("old bytestream form spreads shared settings to every instance", () => {
  const config = parseConfig(
    `{ stores: [{ name: "S", memory: {} }], servers: [{ listener: { http: { socket_address: ":1" } },
      services: { bytestream: { cas_stores: { "": "S", main: "S" }, max_bytes_per_stream: "64kb",
        persist_stream_on_disconnect_timeout: "1m" } } }] }`,
    "b.json5",
    NO_ENV,
  );
  assert.deepEqual(config.servers[0]!.services.bytestream, [
    {
      instance_name: "",
      cas_store: "S",
      max_bytes_per_stream: 64_000,
      persist_stream_on_disconnect_timeout_s: 60,
    },
    {
      instance_name: "main",
      cas_store: "S",
      max_bytes_per_stream: 64_000,
      persist_stream_on_disconnect_timeout_s: 60,
    },
  ]);
});

Deno.test("unknown field names the exact path and the intended word", () => {
  const message = errorOf(`{ stores: [
    { name: "A", memory: {} },
    { name: "B", filesystem: { content_pth: "/x", temp_path: "/t" } },
  ] }`);
  assert.equal(
    message,
    "cas.json5: stores[1].filesystem.content_pth: unknown field (did you mean content_path?)",
  );
});

Deno.test("unknown field far from any known one has no suggestion", () => {
  const message = errorOf(`{ stores: [{ name: "A", memory: { colour: "blue" } }] }`);
  assert.equal(message, "cas.json5: stores[0].memory.colour: unknown field");
});

Deno.test("unknown store kind suggests the close one and lists the valid kinds", () => {
  const message = errorOf(`{ stores: [{ name: "A", memroy: {} }] }`);
  assert.match(
    message,
    /^cas\.json5: stores\[0\]\.memroy: unknown store kind \(did you mean memory\?\); valid store kinds: /,
  );
  for (
    const kind of [
      "memory",
      "filesystem",
      "fast_slow",
      "redis_store",
      "experimental_cloud_object_store",
      "grpc",
    ]
  ) {
    assert.ok(message.includes(kind), `lists ${kind}`);
  }
});

Deno.test("nested unknown store kind names the nested path", () => {
  const message = errorOf(`{ stores: { X: { fast_slow: { fast: { memory: {} }, slow: { s3: {} } } } } }`);
  assert.match(
    message,
    /^cas\.json5: stores\.X\.fast_slow\.slow\.s3: unknown store kind; valid store kinds: memory, /,
  );
});

Deno.test("missing required field names the object", () => {
  const message = errorOf(`{ stores: [{ name: "A", filesystem: { temp_path: "/t" } }] }`);
  assert.equal(message, "cas.json5: stores[0].filesystem: missing field content_path");
});

Deno.test("wrong types name the path", () => {
  assert.equal(
    errorOf(`{ stores: [{ name: "A", memory: { eviction_policy: { max_count: "many" } } }] }`),
    'cas.json5: stores[0].memory.eviction_policy.max_count: expected a whole number, got string "many"',
  );
  assert.equal(
    errorOf(`{ stores: [{ name: "A", memory: { eviction_policy: { max_bytes: true } } }] }`),
    'cas.json5: stores[0].memory.eviction_policy.max_bytes: expected a size (bytes, or text like "10gb", "500mb", "1kib"), got boolean true',
  );
  assert.equal(
    errorOf(`{ servers: [{ listener: { http: { socket_address: 50051 } } }] }`),
    "cas.json5: servers[0].listener.http.socket_address: expected a string, got number 50051",
  );
  assert.equal(
    errorOf(
      `{ stores: [{ name: "A", fast_slow: { fast: { noop: {} }, slow: { noop: {} }, fast_direction: "gett" } }] }`,
    ),
    'cas.json5: stores[0].fast_slow.fast_direction: expected one of both, update, get, read_only, got string "gett" (did you mean get?)',
  );
});

Deno.test("dangling store and scheduler names give the path and a did-you-mean", () => {
  assert.equal(
    errorOf(`{ stores: [{ name: "CAS_MAIN_STORE", memory: {} }],
      servers: [{ listener: { http: { socket_address: ":1" } }, services: { cas: [{ cas_store: "CAS_MAIN" }] } }] }`),
    'cas.json5: servers[0].services.cas[0].cas_store: unknown store "CAS_MAIN" (did you mean CAS_MAIN_STORE?)',
  );
  assert.equal(
    errorOf(`{ stores: [{ name: "A", ref_store: { name: "B" } }, { name: "C", memory: {} }] }`),
    'cas.json5: stores[0].ref_store.name: unknown store "B"; defined stores: A, C',
  );
  assert.equal(
    errorOf(`{ schedulers: [{ name: "MAIN_SCHEDULER", simple: {} }],
      servers: [{ listener: { http: { socket_address: ":1" } }, services: { worker_api: { scheduler: "MAIN_SCHEDULR" } } }] }`),
    'cas.json5: servers[0].services.worker_api.scheduler: unknown scheduler "MAIN_SCHEDULR" (did you mean MAIN_SCHEDULER?)',
  );
  assert.equal(
    errorOf(
      `{ stores: [{ name: "W", memory: {} }], workers: [{ local: { worker_api_endpoint: { uri: "grpc://x" },
      cas_fast_slow_store: "WW", work_directory: "/w", platform_properties: {} } }] }`,
    ),
    'cas.json5: workers[0].local.cas_fast_slow_store: unknown store "WW" (did you mean W?)',
  );
});

Deno.test("ref_store cycles and CAS/AC sharing one store are rejected", () => {
  assert.equal(
    errorOf(`{ stores: [{ name: "A", ref_store: { name: "B" } }, { name: "B", ref_store: { name: "A" } }] }`),
    "cas.json5: stores[0]: ref_store cycle: A → B → A",
  );
  assert.match(
    errorOf(`{ stores: [{ name: "S", memory: {} }], servers: [{ listener: { http: { socket_address: ":1" } },
      services: { cas: [{ cas_store: "S" }], ac: [{ ac_store: "S" }] } }] }`),
    /servers\[0\]\.services\.ac\[0\]\.ac_store: CAS and AC of instance "" use the same store "S"/,
  );
});

Deno.test("duplicate store names are rejected", () => {
  assert.equal(
    errorOf(`{ stores: [{ name: "A", memory: {} }, { name: "A", noop: {} }] }`),
    'cas.json5: stores[1]: duplicate store name "A"',
  );
});

Deno.test("malformed JSON5 gives one line with file, line and column", () => {
  const message = errorOf(`{\n  stores: [\n    { name: "A" memory: {} },\n  ],\n}`, "config/bad.json5");
  assert.equal(message, "config/bad.json5:3:17: invalid JSON5: invalid character 'm'");
});

Deno.test("legacy spellings normalize: hash_verification_function, aliases; experimental_s3_store becomes the aws cloud object store", () => {
  assert.deepEqual(
    findStore(
      parseConfig(
        `{ stores: [{ name: "S3", experimental_s3_store: { region: "us-east-1", bucket: "b" } }] }`,
        "s",
        NO_ENV,
      ),
      "S3",
    ),
    { experimental_cloud_object_store: { provider: "aws", region: "us-east-1", bucket: "b" } },
  );
  const config = parseConfig(
    `{ stores: [
      { name: "S3", memory: {} },
      { name: "V", verify: { backend: { ref_store: { name: "S3" } }, verify_size: true, hash_verification_function: "sha256" } },
      { name: "W", filesystem: { content_path: "/c", temp_path: "/t" } },
    ],
    workers: [{ local: { worker_api_endpoint: { uri: "grpc://127.0.0.1:50061" }, cas_fast_slow_store: "W",
      work_directory: "/w", max_action_timeout: "10m", platform_properties: { cpu_count: { query_cmd: "nproc" } },
      sandbox: "bwrap", sandbox_paths: ["/usr", "/opt/toolchain"] } }] }`,
    "l.json5",
    NO_ENV,
  );
  assert.deepEqual(findStore(config, "V"), {
    verify: { backend: { ref_store: { name: "S3" } }, verify_size: true, verify_hash: true },
  });
  assert.deepEqual(config.workers[0]!.local, {
    worker_api_endpoint: { uri: "grpc://127.0.0.1:50061" },
    cas_fast_slow_store: "W",
    work_directory: "/w",
    max_action_timeout_s: 600,
    platform_properties: { cpu_count: { query_cmd: "nproc" } },
    sandbox: "bwrap",
    sandbox_paths: ["/usr", "/opt/toolchain"],
  });
});

Deno.test("fields written beside the store kind (as in NativeLink's production example) move inside, with a warning", () => {
  const warnings: string[] = [];
  const config = parseConfig(
    `{ stores: { V: { verify: { backend: { noop: {} } }, verify_size: true, hash_verification_function: "sha256" } } }`,
    "p.json5",
    NO_ENV,
    { onWarning: (m) => warnings.push(m) },
  );
  assert.deepEqual(findStore(config, "V"), {
    verify: { backend: { noop: {} }, verify_size: true, verify_hash: true },
  });
  assert.deepEqual(warnings, [
    "p.json5: stores.V.verify_size: belongs inside verify; read as stores.V.verify.verify_size",
    "p.json5: stores.V.hash_verification_function: belongs inside verify; read as stores.V.verify.hash_verification_function",
  ]);
  assert.match(
    errorOf(`{ stores: { V: { verify: { backend: { noop: {} } }, colour: 1 } } }`),
    /stores\.V\.colour: unknown store kind/,
  );
});

Deno.test("tls: ca_file + verify_client becomes client_ca_file; verify_client without a CA is an error", () => {
  const config = parseConfig(
    `{ servers: [{ listener: { http: { socket_address: ":1", tls: { cert_file: "/c", key_file: "/k", ca_file: "/ca", verify_client: true } } } },
      { listener: { http: { socket_address: ":2", tls: { cert_file: "/c", key_file: "/k" } } } }] }`,
    "t.json5",
    NO_ENV,
  );
  assert.deepEqual(config.servers[0]!.listener.http.tls, {
    cert_file: "/c",
    key_file: "/k",
    client_ca_file: "/ca",
    verify_client: true,
  });
  assert.deepEqual(config.servers[1]!.listener.http.tls, {
    cert_file: "/c",
    key_file: "/k",
    verify_client: false,
  });
  assert.equal(
    errorOf(
      `{ servers: [{ listener: { http: { socket_address: ":1", tls: { cert_file: "c", key_file: "k", verify_client: true } } } }] }`,
    ),
    "cas.json5: servers[0].listener.http.tls: verify_client needs client_ca_file (or ca_file)",
  );
});

Deno.test("schedulers nest inline specs and reference stores by name", () => {
  const config = parseConfig(
    `{ stores: [{ name: "AC", memory: {} }, { name: "R", noop: {} }],
      schedulers: [{ name: "S", cache_lookup: { ac_store: "AC", scheduler: { property_modifier: {
        modifications: [{ add: { name: "OSFamily", value: "linux" } }, { remove: "gpu" }],
        scheduler: { simple: { worker_timeout_s: "5m", experimental_backend: "memory" } } } } } }] }`,
    "s.json5",
    NO_ENV,
  );
  assert.deepEqual(config.schedulers[0], {
    name: "S",
    cache_lookup: {
      ac_store: "AC",
      scheduler: {
        property_modifier: {
          modifications: [{ add: { name: "OSFamily", value: "linux" } }, { remove: "gpu" }],
          scheduler: {
            simple: {
              worker_timeout_s: 300,
              experimental_backend: "memory",
            },
          },
        },
      },
    },
  });
  const [kind] = specKind(storeSpecsByName(config).get("R")!);
  assert.equal(kind, "noop");
});

Deno.test("relative paths resolve once, against the start directory (baseDir), in every path field", () => {
  const config = parseConfig(
    `{ stores: [{ name: "F", filesystem: { content_path: "\${D:-.data}/cas", temp_path: "/abs/tmp/" } }],
      workers: [{ local: { worker_api_endpoint: { uri: "grpc://127.0.0.1:1" }, cas_fast_slow_store: "F",
        work_directory: ".data/work", sandbox_paths: ["/usr", "tools"] } }],
      servers: [{ listener: { http: { socket_address: ":1", tls: { cert_file: "certs/c.pem", key_file: "../k.pem",
        client_ca_file: "ca.pem" } } } }] }`,
    "p.json5",
    NO_ENV,
    { baseDir: "/srv/start" },
  );
  assert.deepEqual(findStore(config, "F"), {
    filesystem: { content_path: "/srv/start/.data/cas", temp_path: "/abs/tmp" },
  });
  assert.equal(config.workers[0]!.local.work_directory, "/srv/start/.data/work");
  assert.deepEqual(config.workers[0]!.local.sandbox_paths, ["/usr", "/srv/start/tools"]);
  assert.deepEqual(config.servers[0]!.listener.http.tls, {
    cert_file: "/srv/start/certs/c.pem",
    key_file: "/srv/k.pem",
    client_ca_file: "/srv/start/ca.pem",
    verify_client: true,
  });
  assert.equal(configBaseDir(config), "/srv/start");
  assert.deepEqual(configPathFields(config).map((f) => `${f.role} ${f.path}`), [
    "dir stores[0].filesystem.content_path",
    "dir stores[0].filesystem.temp_path",
    "dir workers[0].local.work_directory",
    "other workers[0].local.sandbox_paths[0]",
    "other workers[0].local.sandbox_paths[1]",
    "file servers[0].listener.http.tls.cert_file",
    "file servers[0].listener.http.tls.key_file",
    "file servers[0].listener.http.tls.client_ca_file",
  ]);
  // Without baseDir: the current directory.
  const here = parseConfig(
    `{ stores: [{ name: "F", filesystem: { content_path: "c", temp_path: "t" } }] }`,
    "h",
    {},
  );
  assert.deepEqual(findStore(here, "F"), {
    filesystem: { content_path: `${Deno.cwd()}/c`, temp_path: `${Deno.cwd()}/t` },
  });
  assert.equal(
    errorOf(`{ stores: [{ name: "F", filesystem: { content_path: "", temp_path: "t" } }] }`),
    "cas.json5: stores[0].filesystem.content_path: expected a path, got an empty string",
  );
});

Deno.test("settings Cairn does not implement are refused at load with their JSON path", () => {
  const worker = (extra: string) =>
    `{ stores: [{ name: "W", memory: {} }], workers: [{ local: { worker_api_endpoint: { uri: "grpc://127.0.0.1:1" },
      cas_fast_slow_store: "W", work_directory: "/w", ${extra} } }] }`;
  const listener = (extra: string) =>
    `{ servers: [{ listener: { http: { socket_address: ":1", ${extra} } } }] }`;
  const cases: [string, string][] = [
    [
      listener(`tls: { cert_file: "/c", key_file: "/k", client_ca_file: "/ca", client_crl_file: "/crl" }`),
      "servers[0].listener.http.tls.client_crl_file",
    ],
    [
      `{ servers: [{ listener: { http: { socket_address: ":1" } }, experimental_identity_header: { header_name: "x" } }] }`,
      "servers[0].experimental_identity_header",
    ],
    [
      `{ stores: [{ name: "F", filesystem: { content_path: "/c", temp_path: "/t", evict_page_cache: true } }] }`,
      "stores[0].filesystem.evict_page_cache",
    ],
    [
      `{ stores: [{ name: "F", fast_slow: { fast: { memory: {} }, slow: { noop: {} }, bypass_dedup_threshold_bytes: 10 } }] }`,
      "stores[0].fast_slow.bypass_dedup_threshold_bytes",
    ],
    [
      `{ stores: [{ name: "G", grpc: { endpoints: [{ address: "grpc://h:1" }], store_type: "cas", forward_headers: ["authorization"] } }] }`,
      "stores[0].grpc.forward_headers",
    ],
    [
      `{ stores: [{ name: "G", grpc: { endpoints: [{ address: "grpc://h:1", connect_timeout_s: 3 }], store_type: "cas" } }] }`,
      "stores[0].grpc.endpoints[0].connect_timeout_s",
    ],
    [
      `{ stores: [{ name: "R", redis_store: { addresses: ["redis://h:1"], experimental_pub_sub_channel: "c" } }] }`,
      "stores[0].redis_store.experimental_pub_sub_channel",
    ],
    [
      `{ stores: { S3: { experimental_cloud_object_store: { provider: "aws", bucket: "b", max_retry_buffer_per_request: 5 } } } }`,
      "stores.S3.experimental_cloud_object_store.max_retry_buffer_per_request",
    ],
    [`{ schedulers: [{ name: "S", grpc: { endpoint: { address: "grpc://h:1" } } }] }`, "schedulers[0].grpc"],
    [
      `{ schedulers: [{ name: "S", simple: { worker_match_logging_interval_s: -1 } }] }`,
      "schedulers[0].simple.worker_match_logging_interval_s",
    ],
    [worker(`directory_cache: { max_entries: 10 }`), "workers[0].local.directory_cache"],
    [worker(`max_upload_timeout: 600`), "workers[0].local.max_upload_timeout"],
    [worker(`use_namespaces: true`), "workers[0].local.use_namespaces"],
    [listener(`freebind: true`), "servers[0].listener.http.freebind"],
    [
      listener(`advanced_http: { experimental_http2_adaptive_window: true }`),
      "servers[0].listener.http.advanced_http.experimental_http2_adaptive_window",
    ],
    [
      `{ servers: [{ listener: { http: { socket_address: ":1" } }, services: { admin: {} } }] }`,
      "servers[0].services.admin",
    ],
    [`{ global: { max_open_files: 65536 } }`, "global.max_open_files"],
    [
      `{ stores: [{ name: "C", memory: {} }], servers: [{ listener: { http: { socket_address: ":1" } },
        services: { bytestream: { cas_stores: { "": "C" }, max_decoding_message_size: 10 } } }] }`,
      "servers[0].services.bytestream.max_decoding_message_size",
    ],
    [`{ experimental_origin_events: { publisher: { store: "X" } } }`, "experimental_origin_events"],
  ];
  for (const [text, path] of cases) {
    assert.match(
      errorOf(text),
      new RegExp(`^cas\\.json5: ${path.replace(/[.[\]]/g, "\\$&")}: not supported by Cairn yet`),
    );
  }
  assert.equal(
    errorOf(`{ global: { default_digest_hash_function: "blake3" } }`),
    "cas.json5: global: default_digest_hash_function: blake3 is not supported by Cairn yet",
  );
  assert.equal(
    errorOf(`{ stores: { S3: { experimental_cloud_object_store: { provider: "gcs", bucket: "b" } } } }`),
    'cas.json5: stores.S3.experimental_cloud_object_store: provider "gcs" is not supported by Cairn yet; use "aws"',
  );
  assert.match(
    errorOf(`{ stores: { R: { redis_store: { addresses: ["redis://h:1"], mode: "sharded" } } } }`),
    /^cas\.json5: stores\.R\.redis_store\.mode: .*"sharded"/,
  );
  // Implemented neighbours still load.
  parseConfig(`{ global: { default_digest_hash_function: "sha256" } }`, "ok", NO_ENV);
  for (const mode of ["standard", "cluster", "sentinel"]) {
    parseConfig(
      `{ stores: { R: { redis_store: { addresses: ["redis://h:1"], mode: "${mode}" } } } }`,
      "ok",
      NO_ENV,
    );
  }
});

Deno.test("listener cors_allowed_origins defaults to none; limits take durations and reject unknown keys", () => {
  const config = parseConfig(
    `{ stores: [], servers: [
      { listener: { http: { socket_address: ":1" } }, services: {} },
      { listener: { http: { socket_address: ":2", cors_allowed_origins: ["http://localhost:3000"],
        limits: { max_uploads: 10, upload_idle_timeout_s: "500ms", header_timeout_s: 2 } } }, services: {} },
    ] }`,
    "c.json5",
    NO_ENV,
  );
  assert.deepEqual(config.servers[0]!.listener.http.cors_allowed_origins, []);
  assert.equal(config.servers[0]!.listener.http.limits, undefined);
  assert.deepEqual(config.servers[1]!.listener.http.cors_allowed_origins, ["http://localhost:3000"]);
  assert.deepEqual(config.servers[1]!.listener.http.limits, {
    max_uploads: 10,
    upload_idle_timeout_s: 0.5,
    header_timeout_s: 2,
  });
  assert.match(
    errorOf(
      `{ stores: [], servers: [{ listener: { http: { socket_address: ":1", limits: { max_upload: 1 } } },
      services: {} }] }`,
    ),
    /limits\.max_upload: unknown field/,
  );
});

Deno.test("simple scheduler's redis backend: a redis_store reference, checked like every field", () => {
  const config = (backend: string) =>
    `{ stores: [{ name: "R", redis_store: { addresses: ["redis://h:1"] } }],
       schedulers: [{ name: "S", simple: { experimental_backend: ${backend} } }] }`;
  const parsed = parseConfig(config(`{ redis: { redis_store: "R" } }`), "cas.json5", NO_ENV);
  assert.deepEqual(parsed.schedulers, [{
    name: "S",
    simple: { experimental_backend: { redis: { redis_store: "R" } } },
  }]);
  assert.equal(
    errorOf(config(`{ redis: { redis_stor: "R" } }`)),
    "cas.json5: schedulers[0].simple.experimental_backend.redis.redis_stor: unknown field (did you mean redis_store?)",
  );
  assert.equal(
    errorOf(config(`{ redis: { redis_store: "Q" } }`)),
    'cas.json5: schedulers[0].simple.experimental_backend.redis.redis_store: unknown store "Q"; defined stores: R',
  );
  assert.equal(
    errorOf(config(`{ rediss: { redis_store: "R" } }`)),
    "cas.json5: schedulers[0].simple.experimental_backend.rediss: unknown scheduler backend (did you mean redis?); valid scheduler backends: memory, redis",
  );
});

Deno.test("listener server: node_http2 or deno_serve; deno_serve refuses what only node_http2 honours", () => {
  const config = parseConfig(
    `{ stores: [], servers: [
      { listener: { http: { socket_address: ":1" } }, services: {} },
      { listener: { http: { socket_address: ":2", server: "deno_serve", limits: { max_uploads: 3 } } }, services: {} },
    ] }`,
    "c.json5",
    NO_ENV,
  );
  assert.equal(config.servers[0]!.listener.http.server, undefined);
  assert.equal(config.servers[1]!.listener.http.server, "deno_serve");
  const wrap = (http: string) => `{ stores: [], servers: [{ listener: { http: ${http} }, services: {} }] }`;
  assert.match(errorOf(wrap(`{ socket_address: ":1", server: "hyper" }`)), /node_http2/);
  assert.match(
    errorOf(
      wrap(`{ socket_address: ":1", server: "deno_serve", advanced_http: { http2_keep_alive_interval: 5 } }`),
    ),
    /advanced_http needs server "node_http2"/,
  );
  assert.match(
    errorOf(wrap(`{ socket_address: ":1", server: "deno_serve", limits: { header_timeout_s: 3 } }`)),
    /limits.header_timeout_s needs server "node_http2"/,
  );
});
