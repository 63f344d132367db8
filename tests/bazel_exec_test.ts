/**
 * Real Bazel 4.2.3 against real Cairn processes with remote execution: the all-in-one config (one process
 * that spawns its sandboxed worker) and the split deployment (CAS server, scheduler, three worker processes).
 * Every action must run remotely, outputs must match a local build byte for byte, and after `bazel clean`
 * a second build must be all remote cache hits.
 */
import assert from "node:assert/strict";
import {
  bazelClean,
  type BazelWorkspace,
  outputsDigest,
  prepareWorkspace,
  runBazelOk,
  WORKSPACE_BUILD_SPAWNS,
  WORKSPACE_TEST_SPAWNS,
} from "./bazel_harness.ts";
import { CairnLauncher as CairnChild, freePort } from "./fixtures/exec_fixtures.ts";

function count(text: string, re: RegExp): number {
  return text.match(new RegExp(re.source, "g"))?.length ?? 0;
}

Deno.test("Bazel builds and tests the workspace on Cairn workers, all-in-one and split", async (t) => {
  const ws: BazelWorkspace = await prepareWorkspace({});
  const data = await Deno.makeTempDir({ prefix: "cairn_exec_" });
  const children: CairnChild[] = [];
  try {
    let local = new Map<string, string>();
    await t.step("a local build gives the reference outputs", async () => {
      await runBazelOk(ws, ["build", "//..."]);
      local = await outputsDigest(ws);
      assert.ok(local.size > 0);
      await bazelClean(ws);
    });

    await t.step("all-in-one: every action runs remotely, sandboxed, with identical outputs", async () => {
      const port = freePort();
      const workerPort = freePort();
      const cairn = new CairnChild("local.json5", {
        CAIRN_LISTEN: `127.0.0.1:${port}`,
        CAIRN_WORKER_API_PORT: String(workerPort),
        CAIRN_DATA_DIR: `${data}/aio`,
      });
      children.push(cairn);
      await cairn.waitFor(/cairn: ready/);
      await cairn.waitFor(/\[worker 0\] Connected/);
      const flags = [`--remote_executor=grpc://127.0.0.1:${port}`, `--remote_cache=grpc://127.0.0.1:${port}`];

      const build = await runBazelOk(ws, ["build", "//..."], { flags });
      assert.equal(build.processes?.remote, WORKSPACE_BUILD_SPAWNS, build.processes?.line ?? "");
      assert.deepEqual(await outputsDigest(ws), local);

      const test = await runBazelOk(ws, ["test", "//..."], { flags });
      assert.match(test.stdout, /1 test passes/);
      assert.equal(
        test.processes?.remote,
        WORKSPACE_TEST_SPAWNS - WORKSPACE_BUILD_SPAWNS,
        test.processes?.line ?? "",
      );

      await bazelClean(ws);
      const again = await runBazelOk(ws, ["build", "//..."], { flags });
      assert.equal(again.processes?.remoteCacheHit, WORKSPACE_BUILD_SPAWNS, again.processes?.line ?? "");
      assert.deepEqual(await outputsDigest(ws), local);
      await cairn.stop();
      children.pop();
      await bazelClean(ws);
    });

    await t.step("split: CAS server, scheduler and three worker processes", async () => {
      const casPort = freePort();
      const schedPort = freePort();
      const workerApiPort = freePort();
      const common = {
        CAIRN_CAS_ENDPOINT: `grpc://127.0.0.1:${casPort}`,
        CAIRN_WORKER_API_ENDPOINT: `grpc://127.0.0.1:${workerApiPort}`,
        // The scheduler admits only workers presenting this token (split_scheduler/split_worker.json5).
        CAIRN_WORKER_TOKEN: crypto.randomUUID(),
      };
      const cas = new CairnChild("split_cas.json5", {
        CAIRN_CAS_LISTEN: `127.0.0.1:${casPort}`,
        CAIRN_DATA_DIR: `${data}/cas`,
      });
      children.push(cas);
      await cas.waitFor(/cairn: ready/);
      const sched = new CairnChild("split_scheduler.json5", {
        ...common,
        CAIRN_SCHEDULER_LISTEN: `127.0.0.1:${schedPort}`,
        CAIRN_WORKER_API_LISTEN: `127.0.0.1:${workerApiPort}`,
      });
      children.push(sched);
      await sched.waitFor(/cairn: ready/);
      const workers = [1, 2, 3].map((i) =>
        new CairnChild("split_worker.json5", { ...common, CAIRN_DATA_DIR: `${data}/w${i}` })
      );
      children.push(...workers);
      for (const w of workers) await w.waitFor(/\[worker 0\] Connected/);

      const flags = [
        `--remote_executor=grpc://127.0.0.1:${schedPort}`,
        `--remote_cache=grpc://127.0.0.1:${casPort}`,
      ];
      const test = await runBazelOk(ws, ["test", "//..."], { flags, jobs: 8 });
      assert.match(test.stdout, /1 test passes/);
      assert.equal(test.processes?.remote, WORKSPACE_TEST_SPAWNS, test.processes?.line ?? "");
      assert.deepEqual(await outputsDigest(ws, [...local.keys()]), local);
      // Each worker filled its own input cache from the CAS: every one of them ran actions.
      const busy = workers.filter((_, i) => {
        try {
          return [...Deno.readDirSync(`${data}/w${i + 1}/cas`)].length > 0;
        } catch {
          return false;
        }
      });
      assert.ok(busy.length >= 2, `expected the actions spread over the workers, ${busy.length} ran any`);
      assert.equal(count(sched.log, /error/i), 0, sched.log);

      await bazelClean(ws);
      const again = await runBazelOk(ws, ["build", "//..."], { flags });
      assert.equal(again.processes?.remoteCacheHit, WORKSPACE_BUILD_SPAWNS, again.processes?.line ?? "");

      for (const w of workers) await w.stop();
      await sched.stop();
      await cas.stop();
      children.length = 0;
    });
  } finally {
    for (const c of children.reverse()) await c.stop().catch(() => {});
    await ws.cleanup();
    await Deno.remove(data, { recursive: true }).catch(() => {});
  }
});
