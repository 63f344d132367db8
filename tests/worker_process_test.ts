import assert from "node:assert/strict";
import { parseConfig } from "../src/config/mod.ts";
import { workerProcessCommand } from "../src/worker/permissions.ts";
import { digestOf, fromProto } from "../src/digest/digest.ts";
import { WorkerApi } from "../src/gen/cairn/worker/v1/worker_api_pb.ts";
import { acKey, getBytes, putBytes } from "../src/store/helpers.ts";
import { bindService } from "../src/transport/bind_service.ts";
import { startCacheServer } from "./fixtures/cache_server.ts";
import { FakeScheduler, start, uploadAction } from "./worker_fixtures.ts";

const dec = new TextDecoder();

Deno.test("worker process: runs with derived permissions, reaches server stores over --cas-endpoint, exits on SIGTERM", async () => {
  // The worker's paths are relative to the parent's start directory (`dir`, passed as --base-dir); the child
  // itself runs in / to show its own working directory does not matter.
  const scheduler = new FakeScheduler();
  const server = await startCacheServer({
    instance: "main",
    bindings: [bindService(WorkerApi, scheduler.impl)],
  });
  const dir = await Deno.makeTempDir({ prefix: "cairn-worker-process-" });
  const configPath = `${dir}/cairn.json5`;
  const text = JSON.stringify({
    stores: [
      { name: "CAS_MAIN", filesystem: { content_path: `${dir}/server-cas`, temp_path: `${dir}/server-tmp` } },
      { name: "AC_MAIN", memory: {} },
      {
        name: "WORKER_CAS",
        fast_slow: {
          fast: { filesystem: { content_path: "worker-cas", temp_path: "worker-tmp" } },
          slow: { ref_store: { name: "CAS_MAIN" } },
        },
      },
    ],
    workers: [{
      local: {
        worker_api_endpoint: { uri: server.address },
        cas_fast_slow_store: "WORKER_CAS",
        upload_action_result: { ac_store: "AC_MAIN" },
        work_directory: "work",
        platform_properties: { cpu_count: { query_cmd: "nproc" } },
      },
    }],
    servers: [{
      listener: { http: { socket_address: "127.0.0.1:50051" } },
      services: {
        cas: [{ instance_name: "main", cas_store: "CAS_MAIN" }],
        ac: [{ instance_name: "main", ac_store: "AC_MAIN" }],
      },
    }],
  });
  await Deno.writeTextFile(configPath, text);
  const config = parseConfig(text, configPath, undefined, { baseDir: dir });
  const [program, ...args] = workerProcessCommand(config, configPath, { casEndpoint: server.address });
  assert.deepEqual(args.slice(-2), ["--base-dir", dir]);
  const cas = server.stores.get("CAS");
  const child = new Deno.Command(program!, { args, cwd: "/", stdout: "piped", stderr: "piped" }).spawn();
  try {
    await scheduler.waitFor(() => scheduler.hellos[0], 60_000);
    const blobs: Uint8Array[] = [];
    const a = uploadAction(
      {
        put: (bytes) => (blobs.push(bytes), digestOf(bytes)),
      },
      { arguments: ["/bin/sh", "-c", "cat src/data.txt"] },
      { "src/data.txt": "hello" },
    );
    for (const b of blobs) await putBytes(cas, digestOf(b), b);
    start(scheduler, "op-p1", a);
    const u = await scheduler.waitFor(() => scheduler.terminal("op-p1"));
    const r = u.update.case === "response" ? u.update.value.result : undefined;
    assert.equal(r?.exitCode, 0, u.update.case === "internalError" ? u.update.value.message : "");
    assert.equal(dec.decode(await getBytes(cas, fromProto(r!.stdoutDigest!), { maxSize: 100 })), "hello");
    // The server's filesystem store directory was never opened by the worker process.
    await assert.rejects(Deno.stat(`${dir}/server-cas`), Deno.errors.NotFound);
    // The worker's cache is where the parent resolved it.
    assert.ok([...Deno.readDirSync(`${dir}/worker-cas`)].length > 0);
    // The AC write went to the parent over gRPC.
    assert.deepEqual(
      await server.stores.get("AC").hasMany([acKey(a.actionDigest)]).then((s) => s[0] !== undefined),
      true,
    );
    child.kill("SIGTERM");
    const status = await child.status;
    assert.equal(status.code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await child.stdout.cancel();
    await child.stderr.cancel();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
