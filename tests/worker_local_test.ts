import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { digestOf, formatDigest } from "../src/digest/digest.ts";
import { TreeSchema } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { FastSlowStore } from "../src/store/fast_slow_store.ts";
import { FilesystemStore } from "../src/store/filesystem_store.ts";
import { createStoreManager, type StoreManager } from "../src/store/store_manager.ts";
import { CairnError, Code } from "../src/util/error.ts";
import { WorkerApi } from "../src/gen/cairn/worker/v1/worker_api_pb.ts";
import { bindService } from "../src/transport/bind_service.ts";
import { makeTestCerts, startServer } from "./fixtures/transport_fixtures.ts";
import { createLocalWorker, type LocalWorker } from "../src/worker/local_worker.ts";
import type { LocalWorkerSpec } from "../src/worker/local_worker_spec.ts";
import { startTestReapiServer, type TestReapiServer } from "./fixtures/test_reapi_server.ts";
import { silentWorkerLog } from "../src/worker/worker_log.ts";
import { blob, enc, FakeScheduler, start, uploadAction } from "./worker_fixtures.ts";

interface Fixture {
  server: TestReapiServer;
  scheduler: FakeScheduler;
  stores: StoreManager;
  worker: LocalWorker;
  dir: string;
  work: string;
  fast: FilesystemStore;
  /** Where the fast store's files are. */
  cas: string;
  cleanup(): Promise<void>;
}

async function setup(
  extra: Partial<LocalWorkerSpec> = {},
  wrapFast: (filesystem: Record<string, unknown>) => Record<string, unknown> = (fs) => fs,
): Promise<Fixture> {
  const scheduler = new FakeScheduler();
  const server = await startTestReapiServer({ workerApi: scheduler.impl });
  const dir = await Deno.makeTempDir({ prefix: "cairn-worker-test-" });
  const work = `${dir}/work`;
  const stores = await createStoreManager({
    WORKER_CAS: {
      fast_slow: {
        fast: wrapFast({ filesystem: { content_path: `${dir}/cas`, temp_path: `${dir}/tmp` } }),
        slow: { grpc: { endpoints: [{ address: server.address }], store_type: "cas" } },
      },
    },
    AC: { grpc: { endpoints: [{ address: server.address }], store_type: "ac" } },
  });
  const worker = createLocalWorker({
    worker_api_endpoint: { uri: server.address },
    cas_fast_slow_store: "WORKER_CAS",
    upload_action_result: { ac_store: "AC" },
    work_directory: work,
    platform_properties: { OSFamily: { values: ["linux"] } },
    max_inflight_tasks: 4,
    ...extra,
  }, { stores, log: silentWorkerLog });
  await worker.start();
  let fast = (stores.get("WORKER_CAS") as FastSlowStore).fast;
  while (!(fast instanceof FilesystemStore) && fast.innerStore) fast = fast.innerStore();
  if (!(fast instanceof FilesystemStore)) fast = (fast as unknown as { inner: FilesystemStore }).inner;
  return {
    server,
    scheduler,
    stores,
    worker,
    dir,
    work,
    fast: fast as FilesystemStore,
    cas: `${dir}/cas`,
    async cleanup() {
      await worker.stop();
      await stores.close();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("worker: runs an action and reports files, Tree outputs, symlinks, logs and metadata", async () => {
  const f = await setup();
  try {
    const hello = await f.scheduler.waitFor(() => f.scheduler.hellos[0]);
    assert.equal(hello.msg.case === "hello" && hello.msg.value.maxInflightTasks, 4);
    const script = [
      "set -e",
      "stat -c %i src/data.txt > out/inode",
      "cat src/data.txt > out/copy.txt",
      "echo same > out/same1.txt; echo same > out/same2.txt",
      "mkdir -p out/tree/sub; echo x > out/tree/sub/y.txt; printf '#!/bin/sh\\n' > out/tree/run.sh",
      "chmod +x out/tree/run.sh; ln -s sub/y.txt out/tree/ln; ln -s copy.txt out/flink",
      "test -x tool.sh && test ! -x src/data.txt && test ! -w src/data.txt",
      "cat link_in > /dev/null",
      "echo same; echo to-stderr >&2",
    ].join("\n");
    const a = uploadAction(f.server, {
      arguments: ["/bin/bash", "-c", script],
      environmentVariables: [{ name: "PATH", value: "/usr/bin:/bin" }],
      outputFiles: ["out/copy.txt", "out/same1.txt", "out/same2.txt", "out/inode", "out/flink"],
      outputDirectories: ["out/tree"],
    }, { "src/data.txt": "input data\n", "tool.sh+x": "#!/bin/sh\n" });
    start(f.scheduler, "op-1", a);
    const u = await f.scheduler.waitFor(() => f.scheduler.terminal("op-1"));
    assert.equal(u.update.case, "response", u.update.case === "internalError" ? u.update.value.message : "");
    const res = u.update.case === "response" ? u.update.value : undefined;
    assert.equal(res?.status?.code ?? 0, 0, res?.status?.message ?? "");
    const r = res!.result!;
    assert.equal(r.exitCode, 0, await blob(f.server, r.stderrDigest));
    assert.equal(await blob(f.server, r.stdoutDigest), "same\n");
    assert.equal(await blob(f.server, r.stderrDigest), "to-stderr\n");
    const byPath = new Map(r.outputFiles.map((o) => [o.path, o]));
    assert.equal(await blob(f.server, byPath.get("out/copy.txt")?.digest), "input data\n");
    assert.equal(await blob(f.server, byPath.get("out/same1.txt")?.digest), "same\n");
    assert.deepEqual(r.outputFileSymlinks.map((s) => [s.path, s.target]), [["out/flink", "copy.txt"]]);
    // Inputs are hard links of the fast store's file.
    const dataDigest = digestOf(enc.encode("input data\n"));
    const inode = (await Deno.stat(f.fast.pathOf(dataDigest))).ino;
    assert.equal(Number(await blob(f.server, byPath.get("out/inode")?.digest)), inode);
    // The output directory as a Tree.
    assert.equal(r.outputDirectories.length, 1);
    const tree = fromBinary(
      TreeSchema,
      f.server.blobs.get(
        `${r.outputDirectories[0]!.treeDigest!.hash}-${r.outputDirectories[0]!.treeDigest!.sizeBytes}`,
      )!,
    );
    assert.deepEqual(tree.root!.files.map((x) => [x.name, x.isExecutable]), [["run.sh", true]]);
    assert.deepEqual(tree.root!.symlinks.map((x) => [x.name, x.target]), [["ln", "sub/y.txt"]]);
    assert.deepEqual(tree.root!.directories.map((x) => x.name), ["sub"]);
    assert.equal(tree.children.length, 1);
    assert.equal(await blob(f.server, tree.children[0]!.files[0]!.digest), "x\n");
    // Metadata.
    const m = r.executionMetadata!;
    assert.equal(m.worker, "w-test");
    for (
      const t of [
        m.workerStartTimestamp,
        m.inputFetchStartTimestamp,
        m.executionStartTimestamp,
        m.outputUploadCompletedTimestamp,
      ]
    ) {
      assert.ok(t, "timestamp missing");
    }
    // Each digest uploaded once ("same\n" is stdout and two output files).
    for (const [key, n] of f.server.uploads) assert.equal(n, 1, `${key} uploaded ${n} times`);
    assert.equal(f.server.uploads.get(formatDigest(digestOf(enc.encode("same\n")))), 1);
    // Written to the action cache.
    assert.equal(f.server.actionResults.get(formatDigest(a.actionDigest))?.exitCode, 0);
    // The action directory is gone (removed just after the result went out, before the slot is reused).
    let left: string[] = [];
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      left = [];
      for await (const e of Deno.readDir(`${f.work}/actions`)) left.push(e.name);
      if (left.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(left, []);
  } finally {
    await f.cleanup();
  }
});

Deno.test("worker: output_paths puts symlinks in output_symlinks; failures are not cached", async () => {
  const f = await setup();
  try {
    const a = uploadAction(f.server, {
      arguments: ["/bin/sh", "-c", "mkdir -p o && echo hi > o/f && ln -s f o/l && exit 3"],
      outputPaths: ["o/f", "o/l"],
    }, { "src/data.txt": "d" });
    start(f.scheduler, "op-2", a);
    const u = await f.scheduler.waitFor(() => f.scheduler.terminal("op-2"));
    const r = u.update.case === "response" ? u.update.value.result! : undefined;
    assert.equal(r?.exitCode, 3);
    assert.deepEqual(r.outputSymlinks.map((s) => [s.path, s.target]), [["o/l", "f"]]);
    assert.deepEqual(r.outputFiles.map((o) => o.path), ["o/f"]);
    assert.equal(f.server.actionResults.size, 0);
  } finally {
    await f.cleanup();
  }
});

Deno.test("worker: a timeout kills the action and reports DEADLINE_EXCEEDED with the output so far", async () => {
  const f = await setup({ max_action_timeout_s: 30 });
  try {
    const a = uploadAction(
      f.server,
      {
        arguments: ["/bin/sh", "-c", "echo started; sleep 100"],
      },
      { "src/data.txt": "d" },
      { timeout: durationFromMs(700) },
    );
    start(f.scheduler, "op-3", a);
    const u = await f.scheduler.waitFor(() => f.scheduler.terminal("op-3"));
    assert.equal(u.update.case, "response");
    const res = u.update.case === "response" ? u.update.value : undefined;
    assert.equal(res?.status?.code, Code.DeadlineExceeded);
    assert.equal(await blob(f.server, res?.result?.stdoutDigest), "started\n");
    assert.equal(f.server.actionResults.size, 0);
    // A timeout above max_action_timeout is refused without running.
    const b = uploadAction(f.server, { arguments: ["/bin/true"] }, { "src/data.txt": "d" }, {
      timeout: durationFromMs(60_000),
    });
    start(f.scheduler, "op-3b", b);
    const v = await f.scheduler.waitFor(() => f.scheduler.terminal("op-3b"));
    assert.equal(v.update.case === "response" && v.update.value.status?.code, Code.InvalidArgument);
  } finally {
    await f.cleanup();
  }
});

Deno.test("worker: output paths escaping the input root are INVALID_ARGUMENT and nothing runs", async () => {
  const f = await setup();
  try {
    const marker = `${f.dir}/ran`;
    for (
      const [op, paths] of [["op-4a", ["../x"]], ["op-4b", ["/etc/x"]], ["op-4c", ["a/../../x"]]] as const
    ) {
      const a = uploadAction(f.server, {
        arguments: ["/bin/sh", "-c", `touch ${marker}`],
        outputFiles: [...paths],
      }, { "src/data.txt": "d" });
      start(f.scheduler, op, a);
      const u = await f.scheduler.waitFor(() => f.scheduler.terminal(op));
      assert.equal(u.update.case === "response" && u.update.value.status?.code, Code.InvalidArgument, op);
    }
    await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
  } finally {
    await f.cleanup();
  }
});

Deno.test("worker: a failing precondition script declines work; query_cmd values are sent in Hello", async () => {
  const f = await setup({
    sandbox: "none",
    experimental_precondition_script: "/bin/false",
    platform_properties: { cpu_count: { query_cmd: "nproc" }, OSFamily: { values: ["linux"] } },
  });
  try {
    const hello = await f.scheduler.waitFor(() => f.scheduler.hellos[0]);
    const props = hello.msg.case === "hello" ? hello.msg.value.properties.map((p) => [p.name, p.value]) : [];
    assert.deepEqual(props, [["cpu_count", String(navigator.hardwareConcurrency)], ["OSFamily", "linux"]]);
    const marker = `${f.dir}/ran`;
    const a = uploadAction(f.server, { arguments: ["/bin/sh", "-c", `touch ${marker}`] }, {
      "src/data.txt": "d",
    });
    start(f.scheduler, "op-5", a);
    const u = await f.scheduler.waitFor(() => f.scheduler.terminal("op-5"));
    assert.equal(u.update.case, "internalError");
    assert.equal(u.update.case === "internalError" && u.update.value.code, Code.Unavailable);
    assert.ok(!f.scheduler.updates.some((x) => x.operationId === "op-5" && x.update.case === "started"));
    await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
  } finally {
    await f.cleanup();
  }
});

/** Every file under `dir` with its permission bits. */
async function modes(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (d: string): Promise<void> => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile) out.set(p, (await Deno.stat(p)).mode! & 0o7777);
    }
  };
  await walk(dir);
  return out;
}

for (
  const [name, wrap] of [
    [
      "compression",
      (fs: Record<string, unknown>) => ({ compression: { backend: fs, compression_algorithm: { lz4: {} } } }),
    ],
    [
      "verify",
      (fs: Record<string, unknown>) => ({ verify: { backend: fs, verify_size: true, verify_hash: true } }),
    ],
  ] as const
) {
  Deno.test(`worker: a ${name} fast store serves correct inputs and its files keep their mode`, async () => {
    const f = await setup({}, wrap);
    try {
      const script = [
        "set -e",
        "cat src/data.txt > out/copy.txt; ./tool.sh > out/tool.txt; stat -c %a src/data.txt tool.sh > out/modes",
        "test -x tool.sh && test ! -x src/data.txt && test ! -w src/data.txt",
      ].join("\n");
      const data = "input data, long enough to be compressed: " + "abc".repeat(200) + "\n";
      const a = uploadAction(f.server, {
        arguments: ["/bin/bash", "-c", script],
        environmentVariables: [{ name: "PATH", value: "/usr/bin:/bin" }],
        outputFiles: ["out/copy.txt", "out/tool.txt", "out/modes"],
      }, { "src/data.txt": data, "tool.sh+x": "#!/bin/sh\necho tool ran\n" });
      start(f.scheduler, "op-1", a);
      const u = await f.scheduler.waitFor(() => f.scheduler.terminal("op-1"));
      assert.equal(
        u.update.case,
        "response",
        u.update.case === "internalError" ? u.update.value.message : "",
      );
      const res = u.update.case === "response" ? u.update.value : undefined;
      assert.equal(res?.status?.code ?? 0, 0, res?.status?.message ?? "");
      const r = res!.result!;
      assert.equal(r.exitCode, 0, await blob(f.server, r.stderrDigest));
      const byPath = new Map(r.outputFiles.map((o) => [o.path, o]));
      assert.equal(await blob(f.server, byPath.get("out/copy.txt")?.digest), data);
      assert.equal(await blob(f.server, byPath.get("out/tool.txt")?.digest), "tool ran\n");
      assert.equal(await blob(f.server, byPath.get("out/modes")?.digest), "444\n555\n");
      // The store's own files were never chmod-ed by the worker.
      const files = await modes(f.cas);
      assert.ok(files.size >= 2, `expected the inputs in the fast store, found ${files.size} files`);
      for (const [path, mode] of files) assert.equal(mode, 0o444, `${path} has mode ${mode.toString(8)}`);
    } finally {
      await f.cleanup();
    }
  });
}

Deno.test("worker: reaches a TLS worker API with mTLS (worker_api_endpoint.tls_config); plain grpc:// is refused", async () => {
  const certs = await makeTestCerts();
  const scheduler = new FakeScheduler();
  const { server, port } = await startServer({
    bindings: [bindService(WorkerApi, scheduler.impl)],
    listener: {
      tls: { cert_file: certs.serverCert, key_file: certs.serverKey, client_ca_file: certs.caCert },
    },
  });
  const dir = await Deno.makeTempDir({ prefix: "cairn-worker-tls-" });
  const stores = await createStoreManager({
    WORKER_CAS: {
      fast_slow: {
        fast: { filesystem: { content_path: `${dir}/cas`, temp_path: `${dir}/tmp` } },
        slow: { memory: {} },
      },
    },
  });
  const spec = (uri: string): LocalWorkerSpec => ({
    worker_api_endpoint: {
      uri,
      tls_config: { ca_file: certs.caCert, cert_file: certs.clientCert, key_file: certs.clientKey },
    },
    cas_fast_slow_store: "WORKER_CAS",
    work_directory: `${dir}/work`,
    sandbox: "none",
  });
  const worker = createLocalWorker(spec(`grpcs://localhost:${port}`), { stores, log: silentWorkerLog });
  try {
    assert.throws(
      () => createLocalWorker(spec(`grpc://localhost:${port}`), { stores, log: silentWorkerLog }),
      (e: unknown) =>
        e instanceof CairnError && e.code === Code.InvalidArgument && /needs a grpcs/.test(e.message),
    );
    await worker.start();
    const hello = await scheduler.waitFor(() => scheduler.hellos[0]);
    assert.equal(hello.msg.case, "hello");
  } finally {
    await worker.stop();
    await stores.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("worker: actions killed because the worker stops are reported UNAVAILABLE (rerun), not as results", async () => {
  const f = await setup();
  try {
    const a = uploadAction(f.server, { arguments: ["/bin/sh", "-c", "sleep 100"] }, { "src/data.txt": "d" });
    start(f.scheduler, "op-stop", a);
    await f.scheduler.waitFor(() =>
      f.scheduler.updates.find((u) => u.operationId === "op-stop" && u.update.case === "started")
    );
    await f.worker.stop();
    const u = await f.scheduler.waitFor(() => f.scheduler.terminal("op-stop"));
    assert.equal(u.update.case, "internalError");
    const status = u.update.case === "internalError" ? u.update.value : undefined;
    assert.equal(status?.code, Code.Unavailable, String(status?.message));
    assert.match(status?.message ?? "", /stopped while running the action/);
    assert.equal(f.server.actionResults.size, 0, "nothing is cached for a killed run");
  } finally {
    await f.cleanup();
  }
});
