// Real Bazel 4.2.3 through the shipped configs, each started by the real `main.ts` in a fresh temporary
// working directory with CAIRN_DATA_DIR unset, so their relative `${CAIRN_DATA_DIR:-.data}` paths mean
// `<that directory>/.data` — for the server and for its worker processes alike:
//
// - config/local.json5 as is: `bazel build` and `bazel test` with `--spawn_strategy=remote` run every action
//   on Cairn's sandboxed worker, with the right outputs.
// - config/seed_000_tiered_local.json5 (NativeLink's tiered verify → dedup → lz4 chain, S3 leaves on disk) and
//   config/seed_001_local.json5 (NativeLink's production CAS and AC chains, Redis/S3 leaves on disk, instance
//   "main"): a build populates the cache, `bazel clean` + rebuild is all remote cache hits; then the server is
//   SIGKILLed and restarted, and the rebuild is still all hits (everything on disk survived).
//
// Run: deno test --allow-all tests/bazel_config_test.ts
import assert from "node:assert/strict";
import {
  assertAllRemoteHits,
  assertBazelOk as ok,
  bazelAvailable,
  bazelClean,
  type BazelResult,
  type BazelWorkspace,
  EXPECTED_TEXT_OUTPUTS,
  MAIN_OUTPUTS,
  outputsDigest,
  prepareWorkspace,
  runBazel,
  WORKSPACE_BUILD_SPAWNS,
  WORKSPACE_TEST_SPAWNS,
} from "./bazel_harness.ts";
import { CairnLauncher, freePort } from "./fixtures/exec_fixtures.ts";
import { createClient } from "@connectrpc/connect";
import {
  Capabilities,
  Compressor_Value,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";

/** Every non-internal process of the workspace's build was a remote cache hit. */
function assertAllHits(r: BazelResult, what: string): void {
  assertAllRemoteHits(r, WORKSPACE_BUILD_SPAWNS, what);
}

async function assertTextOutputs(ws: BazelWorkspace): Promise<void> {
  for (const [rel, text] of Object.entries(EXPECTED_TEXT_OUTPUTS)) {
    assert.equal(await Deno.readTextFile(`${ws.dir}/bazel-bin/${rel}`), text, rel);
  }
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) n++;
    else if (e.isDirectory) n += await countFiles(`${dir}/${e.name}`);
  }
  return n;
}

/** The environment every test starts main.ts with: data relative to the working directory. */
const RELATIVE_DATA = { CAIRN_DATA_DIR: "" };

/** Starts `config/<file>` in `cwd`; resolves with the process and server 0's port once ready. */
async function start(
  file: string,
  cwd: string,
  env: Record<string, string>,
): Promise<{ cairn: CairnLauncher; port: number }> {
  const cairn = new CairnLauncher(file, { ...RELATIVE_DATA, ...env }, { cwd });
  try {
    const m = await cairn.waitFor(/cairn: server 0 listening on [^:\s]+:(\d+)/);
    await cairn.waitFor(/cairn: ready/);
    return { cairn, port: Number(m[1]) };
  } catch (err) {
    await cairn.kill();
    throw err;
  }
}

Deno.test("config/local.json5 as shipped, started in another directory: Bazel builds and tests all-remote", async (t) => {
  assert.ok(await bazelAvailable(), "`bazel` is not on PATH (Debian package bazel-bootstrap)");
  const cwd = await Deno.makeTempDir({ prefix: "cairn_local_cwd_" });
  const ws = await prepareWorkspace({ maxIdleSecs: 60 });
  let cairn: CairnLauncher | undefined;
  try {
    const started = await start("local.json5", cwd, {
      CAIRN_LISTEN: "127.0.0.1:0",
      CAIRN_WORKER_API_PORT: String(freePort()),
    });
    cairn = started.cairn;
    await cairn.waitFor(/\[worker 0\] Connected/);
    // The data directory is the working directory's .data, printed absolute.
    assert.match(cairn.log, new RegExp(`keeps its data in ${cwd}/\\.data/cas/content`));
    const url = `grpc://127.0.0.1:${started.port}`;
    const flags = [`--remote_executor=${url}`, "--spawn_strategy=remote"];

    await t.step("Capabilities: the scheduler's platform properties, zstd, execution", async () => {
      const caps = createClient(Capabilities, createGrpcClientTransport(url));
      const c = await caps.getCapabilities({ instanceName: "" });
      assert.deepEqual(c.executionCapabilities?.supportedNodeProperties, [
        "ISA",
        "OSFamily",
        "container-image",
        "cpu_count",
      ]);
      assert.equal(c.executionCapabilities?.execEnabled, true);
      assert.deepEqual(c.cacheCapabilities?.supportedCompressors, [Compressor_Value.ZSTD]);
      assert.deepEqual(c.cacheCapabilities?.supportedBatchUpdateCompressors, [Compressor_Value.ZSTD]);
    });

    await t.step("bazel build //... runs every action remotely, outputs correct", async () => {
      const r = ok(await runBazel(ws, ["build", "//..."], { flags }), "remote build");
      assert.equal(r.processes!.remote, WORKSPACE_BUILD_SPAWNS, r.processes!.line);
      assert.equal(r.processes!.total - r.processes!.internal, WORKSPACE_BUILD_SPAWNS, r.processes!.line);
      await assertTextOutputs(ws);
      const out = await new Deno.Command(`${ws.dir}/bazel-bin/hello`, { args: ["deno"] }).output();
      assert.equal(new TextDecoder().decode(out.stdout), "hello, deno!\ntriangle(10) = 55\n");
    });

    await t.step("bazel test //... runs the test remotely and it passes", async () => {
      const r = ok(await runBazel(ws, ["test", "//..."], { flags }), "remote test");
      assert.match(r.stdout, /1 test passes/);
      assert.equal(r.processes!.remote, WORKSPACE_TEST_SPAWNS - WORKSPACE_BUILD_SPAWNS, r.processes!.line);
    });

    await t.step("the server and its worker kept their data under <cwd>/.data", async () => {
      assert.ok(await countFiles(`${cwd}/.data/cas/content`) >= WORKSPACE_BUILD_SPAWNS);
      assert.ok(await countFiles(`${cwd}/.data/ac/content`) >= WORKSPACE_BUILD_SPAWNS);
      assert.ok(await countFiles(`${cwd}/.data/worker/cas`) > 0, "the worker's cache is under <cwd>/.data");
      assert.ok((await Deno.stat(`${cwd}/.data/work`)).isDirectory);
    });
    await cairn.stop();
    cairn = undefined;
  } finally {
    await cairn?.stop().catch(() => {});
    await ws.cleanup();
    await Deno.remove(cwd, { recursive: true });
  }
});

/**
 * Cold build, clean + warm build (all hits), SIGKILL + restart, clean + build (all hits), all with the
 * first build's outputs.
 */
async function cacheSurvivesCrash(
  t: Deno.TestContext,
  file: string,
  env: Record<string, string>,
  instanceFlags: string[],
  dataDir: string,
): Promise<void> {
  assert.ok(await bazelAvailable(), "`bazel` is not on PATH (Debian package bazel-bootstrap)");
  const cwd = await Deno.makeTempDir({ prefix: "cairn_seed_cwd_" });
  const ws = await prepareWorkspace({ maxIdleSecs: 60 });
  let cairn: CairnLauncher | undefined;
  try {
    let started = await start(file, cwd, env);
    cairn = started.cairn;
    const flags = () => [`--remote_cache=grpc://127.0.0.1:${started.port}`, ...instanceFlags];
    let first = new Map<string, string>();

    await t.step("a cold build populates the cache", async () => {
      const r = ok(await runBazel(ws, ["build", "//..."], { flags: flags() }), "cold build");
      assert.equal(r.processes!.remoteCacheHit, 0, r.processes!.line);
      assert.equal(r.processes!.total - r.processes!.internal, WORKSPACE_BUILD_SPAWNS, r.processes!.line);
      await assertTextOutputs(ws);
      first = await outputsDigest(ws);
      for (const rel of MAIN_OUTPUTS) assert.ok(first.has(rel), `missing output ${rel}`);
    });

    await t.step("bazel clean + rebuild is all remote cache hits", async () => {
      await bazelClean(ws);
      const r = ok(await runBazel(ws, ["build", "//..."], { flags: flags() }), "warm build");
      assertAllHits(r, "warm build");
      assert.deepEqual(await outputsDigest(ws), first);
    });

    await t.step("after SIGKILL and a restart, the rebuild is still all hits", async () => {
      await cairn!.kill();
      cairn = undefined;
      assert.ok(await countFiles(`${cwd}/.data/${dataDir}`) > 0, `nothing on disk under .data/${dataDir}`);
      started = await start(file, cwd, env);
      cairn = started.cairn;
      await bazelClean(ws);
      const r = ok(await runBazel(ws, ["build", "//..."], { flags: flags() }), "build after restart");
      assertAllHits(r, "build after restart");
      assert.deepEqual(await outputsDigest(ws), first);
    });
    await cairn.stop();
    cairn = undefined;
  } finally {
    await cairn?.kill();
    await ws.cleanup();
    await Deno.remove(cwd, { recursive: true });
  }
}

Deno.test("config/seed_000_tiered_local.json5: Bazel's cache survives a crash of the server", async (t) => {
  await cacheSurvivesCrash(t, "seed_000_tiered_local.json5", { CAIRN_LISTEN: "127.0.0.1:0" }, [], "seed_000");
});

Deno.test("config/seed_001_local.json5 (instance main): Bazel's cache survives a crash of the server", async (t) => {
  await cacheSurvivesCrash(
    t,
    "seed_001_local.json5",
    { CAIRN_LISTEN: "127.0.0.1:0", CAIRN_METRICS_LISTEN: "127.0.0.1:0" },
    ["--remote_instance_name=main"],
    "seed_001",
  );
});
