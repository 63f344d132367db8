/**
 * Every config file shipped in `config/` parses, and has the shape its consumers rely on.
 * New files are picked up automatically.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ConfigError,
  describeConfig,
  findStore,
  loadConfig,
  specKind,
  STORE_KINDS,
} from "../src/config/mod.ts";
import type { CairnConfig, StoreSpec } from "../src/config/mod.ts";

const CONFIG_DIR = fileURLToPath(new URL("../config/", import.meta.url));

/** Plausible values for the variables the shipped configs use without a default. */
const ENV: Record<string, string> = {
  SHARED_REDIS_URL: "redis://127.0.0.1:6379/1",
  CAIRN_DATA_DIR: "/tmp/cairn-test-data",
};

const files = [...Deno.readDirSync(CONFIG_DIR)]
  .filter((entry) => entry.isFile && /\.json5?$/.test(entry.name))
  .map((entry) => entry.name)
  .sort();

function assertStoreShape(spec: StoreSpec, where: string): void {
  const keys = Object.keys(spec);
  assert.equal(keys.length, 1, `${where}: exactly one kind key, got ${keys.join(", ")}`);
  const [kind, body] = specKind(spec);
  assert.ok(kind in STORE_KINDS.variants, `${where}: known kind ${kind}`);
  // Nested specs have the same shape.
  const visit = (value: unknown, path: string): void => {
    if (Array.isArray(value)) value.forEach((item, i) => visit(item, `${path}[${i}]`));
    else if (typeof value === "object" && value !== null) {
      for (const [k, v] of Object.entries(value)) {
        const nested = typeof v === "object" && v !== null && !Array.isArray(v) &&
          Object.keys(v).length === 1 &&
          Object.keys(v)[0]! in STORE_KINDS.variants &&
          [
            "backend",
            "fast",
            "slow",
            "lower_store",
            "upper_store",
            "index_store",
            "content_store",
            "cas_store",
            "store",
          ].includes(k);
        if (nested) assertStoreShape(v as StoreSpec, `${path}.${k}`);
        else visit(v, `${path}.${k}`);
      }
    }
  };
  visit(body, `${where}.${kind}`);
}

function assertConfigShape(config: CairnConfig, file: string): void {
  assert.ok(
    config.stores.length + config.servers.length + config.workers.length > 0,
    `${file}: defines stores, servers or workers`,
  );
  const names = new Set<string>();
  for (const store of config.stores) {
    assert.equal(typeof store.name, "string");
    assert.ok(!names.has(store.name), `${file}: unique store ${store.name}`);
    names.add(store.name);
    const { name: _name, ...spec } = store;
    assertStoreShape(spec as StoreSpec, `${file}: stores ${store.name}`);
  }
  for (const server of config.servers) {
    assert.equal(typeof server.listener.http.socket_address, "string");
    for (const [service, value] of Object.entries(server.services)) {
      if (!Array.isArray(value)) continue;
      for (const entry of value) {
        assert.equal(typeof entry.instance_name, "string", `${file}: ${service} entry has instance_name`);
        for (const key of ["cas_store", "ac_store", "fetch_store", "push_store"] as const) {
          if (key in entry) {
            assert.ok(names.has((entry as Record<string, string>)[key]!), `${file}: ${service}.${key}`);
          }
        }
      }
    }
  }
  for (const worker of config.workers) {
    assert.ok(names.has(worker.local.cas_fast_slow_store), `${file}: worker store exists`);
    assert.equal(typeof worker.local.work_directory, "string");
  }
  const description = describeConfig(config);
  for (const store of config.stores) {
    assert.ok(description.includes(`  ${store.name}: `), `${file}: describes ${store.name}`);
  }
}

Deno.test("config/ has the shipped example files", () => {
  for (
    const name of [
      "local.json5",
      "seed_000_tiered_local.json5",
      "seed_001_local.json5",
      "seed_003_cas.json5",
      "seed_003_worker.json5",
    ]
  ) {
    assert.ok(files.includes(name), `config/${name} exists`);
  }
});

for (const file of files) {
  Deno.test(`config/${file} parses and has a sane shape`, async () => {
    const config = await loadConfig(join(CONFIG_DIR, file), ENV);
    assertConfigShape(config, file);
  });
}

Deno.test("seed_001 local: map forms, env defaults and the misplaced verify fields resolve", async () => {
  const config = await loadConfig(join(CONFIG_DIR, "seed_001_local.json5"), ENV);
  assert.deepEqual(config.stores.map((s) => s.name), [
    "AC_FAST_SLOW_STORE",
    "AC_STORE",
    "cas_FAST_SLOW_STORE",
    "cas_STORE",
    "BEP_STORE",
  ]);
  const verify = findStore(config, "cas_FAST_SLOW_STORE");
  assert.ok(verify && "verify" in verify);
  assert.equal(verify.verify.verify_size, true);
  assert.equal(verify.verify.verify_hash, true);
  const slow =
    (verify.verify.backend as { fast_slow: { slow: { size_partitioning: { lower_store: unknown } } } })
      .fast_slow.slow.size_partitioning;
  assert.deepEqual(slow.lower_store, {
    filesystem: {
      content_path: "/tmp/cairn-test-data/seed_001/cas_small/content",
      temp_path: "/tmp/cairn-test-data/seed_001/cas_small/tmp",
      eviction_policy: { max_bytes: 5_000_000_000 },
    },
  });
  assert.deepEqual(findStore(config, "cas_STORE"), {
    existence_cache: {
      backend: { ref_store: { name: "cas_FAST_SLOW_STORE" } },
      eviction_policy: { max_count: 10000000, max_seconds: 1800 },
    },
  });
  const services = config.servers[0]!.services;
  assert.deepEqual(services.cas, [{ instance_name: "main", cas_store: "cas_STORE" }]);
  assert.deepEqual(services.capabilities, []);
  assert.deepEqual(services.bytestream, [{ instance_name: "main", cas_store: "cas_STORE" }]);
  assert.equal(config.servers[0]!.listener.http.advanced_http?.experimental_http2_keep_alive_timeout_s, 1200);
  assert.deepEqual(config.servers[1]!.services, {
    experimental_prometheus: { path: "/metrics" },
    health: {},
  });
});

const DOCS_DIR = fileURLToPath(new URL("./fixtures/nativelink_docs/", import.meta.url));

Deno.test("NativeLink's Redis and S3 examples as written load (redis_store, experimental_s3_store, provider aws)", async () => {
  for (const file of ["seed_001_production_cas.json5", "seed_000_tiered_s3.json5"]) {
    const config = await loadConfig(join(DOCS_DIR, file), ENV);
    assert.ok(config.stores.length > 0, file);
  }
  const config = await loadConfig(join(DOCS_DIR, "seed_001_production_cas.json5"), ENV);
  const bep = findStore(config, "BEP_STORE");
  assert.deepEqual(bep, { redis_store: { addresses: ["redis://redis-headless:6379/2"] } });
});

Deno.test("NativeLink's examples as written are refused at the first setting Cairn does not implement", async () => {
  const cases: [string, string][] = [
    ["seed_000_connection_pooling.json5", "global.max_open_files: not supported by Cairn yet"],
  ];
  for (const [file, message] of cases) {
    await assert.rejects(loadConfig(join(DOCS_DIR, file), {}), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(
        err.message,
        `${join(DOCS_DIR, file)}: ${message}${
          file.includes("pooling") ? " (raise the limit with ulimit -n)" : ""
        }`,
      );
      return true;
    });
  }
});

Deno.test("seed_003 scheduler and worker: grpc stores, simple scheduler, local worker", async () => {
  const scheduler = await loadConfig(join(CONFIG_DIR, "seed_003_scheduler.json5"), { CAS_ENDPOINT: "cas" });
  assert.deepEqual(findStore(scheduler, "GRPC_LOCAL_STORE"), {
    grpc: { instance_name: "", endpoints: [{ address: "grpc://cas:50051" }], store_type: "cas" },
  });
  assert.equal(scheduler.schedulers[0]!.name, "MAIN_SCHEDULER");
  assert.deepEqual(scheduler.servers[0]!.services.capabilities, [
    { instance_name: "", remote_execution: { scheduler: "MAIN_SCHEDULER" } },
  ]);
  const worker = await loadConfig(join(CONFIG_DIR, "seed_003_worker.json5"), {});
  const local = worker.workers[0]!.local;
  assert.equal(local.worker_api_endpoint.uri, "grpc://127.0.0.1:50061");
  assert.deepEqual(local.platform_properties.cpu_count, { query_cmd: "nproc" });
  assert.deepEqual(local.upload_action_result, { ac_store: "GRPC_LOCAL_AC_STORE" });
  assert.equal(worker.servers.length, 0);
});

Deno.test("seed_000 tiered local and TLS examples normalize", async () => {
  const tiered = await loadConfig(join(CONFIG_DIR, "seed_000_tiered_local.json5"), {}, { baseDir: "/srv" });
  const spec = findStore(tiered, "CAS_PRODUCTION");
  assert.ok(spec && "verify" in spec);
  assert.equal(specKind(spec.verify.backend)[0], "dedup");
  assert.ok(JSON.stringify(spec).includes(`"content_path":"/srv/.data/seed_000/index/content"`));
  const tls = await loadConfig(join(CONFIG_DIR, "seed_000_tls.json5"), {});
  assert.deepEqual(tls.servers[0]!.listener.http.tls, {
    cert_file: "/certs/server.crt",
    key_file: "/certs/server.key",
    client_ca_file: "/certs/ca.crt",
    verify_client: true,
  });
});

Deno.test("local.json5 puts data under CAIRN_DATA_DIR, defaulting to .data", async () => {
  const config = await loadConfig(join(CONFIG_DIR, "local.json5"), {}, { baseDir: "/home/me/project" });
  assert.equal(config.servers[0]!.listener.http.socket_address, "127.0.0.1:50051");
  const ac = findStore(config, "AC");
  assert.ok(ac && "completeness_checking" in ac);
  const backend = ac.completeness_checking.backend as {
    filesystem: { content_path: string; temp_path: string };
  };
  // Relative to the directory Cairn starts in, resolved once at load.
  assert.equal(backend.filesystem.content_path, "/home/me/project/.data/ac/content");
  assert.equal(config.workers[0]!.local.work_directory, "/home/me/project/.data/work");
  const moved = await loadConfig(join(CONFIG_DIR, "local.json5"), { CAIRN_DATA_DIR: "/srv/cairn" });
  const movedAc = findStore(moved, "AC") as {
    completeness_checking: { backend: { filesystem: { temp_path: string } } };
  };
  assert.equal(movedAc.completeness_checking.backend.filesystem.temp_path, "/srv/cairn/ac/tmp");
  assert.equal(moved.workers[0]!.local.work_directory, "/srv/cairn/work");
});

Deno.test("a missing config file is one clear line", async () => {
  await assert.rejects(
    loadConfig(join(CONFIG_DIR, "does_not_exist.json5"), {}),
    /does_not_exist\.json5: cannot read config file: no such file/,
  );
});
