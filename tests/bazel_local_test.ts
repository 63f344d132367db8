// Proves the Bazel test workspace and its offline overrides work with the real Bazel 4.2.3,
// without any remote: build, test, no-op rebuild, byte-identical rebuild after clean, and
// no Bazel server left behind. Needs no Cairn server.
//
// Run: deno test --allow-all tests/bazel_local_test.ts
import assert from "node:assert/strict";
import {
  bazelAvailable,
  bazelClean,
  EXPECTED_TEXT_OUTPUTS,
  MAIN_OUTPUTS,
  outputsDigest,
  parseProcessSummary,
  prepareWorkspace,
  runBazelOk,
  WORKSPACE_BUILD_SPAWNS,
  WORKSPACE_TEST_SPAWNS,
} from "./bazel_harness.ts";

Deno.test("parseProcessSummary reads Bazel 4.2.3 summary lines", () => {
  const cold = parseProcessSummary(
    "INFO: Elapsed time: 4.375s, Critical Path: 1.76s\nINFO: 32 processes: 17 internal, 15 linux-sandbox.\n",
  );
  assert.equal(cold?.total, 32);
  assert.equal(cold?.internal, 17);
  assert.equal(cold?.linuxSandbox, 15);
  assert.equal(cold?.remoteCacheHit, 0);

  const hit = parseProcessSummary("INFO: 32 processes: 15 remote cache hit, 17 internal.");
  assert.equal(hit?.remoteCacheHit, 15);
  assert.deepEqual(hit?.byKind, { "remote cache hit": 15, internal: 17 });

  const remote = parseProcessSummary("INFO: 31 processes: 18 internal, 13 remote.");
  assert.equal(remote?.remote, 13);

  assert.equal(parseProcessSummary("INFO: 1 process: 1 internal.")?.internal, 1);
  assert.equal(parseProcessSummary("INFO: 0 processes.")?.total, 0);
  assert.equal(parseProcessSummary("INFO: Build completed successfully"), undefined);
  // The last summary wins (a command may print earlier ones from a previous phase).
  assert.equal(
    parseProcessSummary("INFO: 2 processes: 2 local.\nINFO: 3 processes: 3 remote.")?.remote,
    3,
  );
});

Deno.test("Bazel 4.2.3 builds and tests the workspace offline, deterministically", async (t) => {
  assert.ok(await bazelAvailable(), "`bazel` is not on PATH (Debian package bazel-bootstrap)");
  const ws = await prepareWorkspace();
  try {
    let first = new Map<string, string>();

    await t.step("bazel build //... runs every action locally", async () => {
      const r = await runBazelOk(ws, ["build", "//..."]);
      assert.ok(r.processes, r.stderr);
      assert.equal(r.processes.linuxSandbox, WORKSPACE_BUILD_SPAWNS, r.processes.line);
      assert.equal(r.processes.remoteCacheHit, 0);
      assert.equal(r.processes.total, r.processes.internal + WORKSPACE_BUILD_SPAWNS);
      for (const [rel, text] of Object.entries(EXPECTED_TEXT_OUTPUTS)) {
        assert.equal(await Deno.readTextFile(`${ws.dir}/bazel-bin/${rel}`), text, rel);
      }
      first = await outputsDigest(ws);
      for (const rel of MAIN_OUTPUTS) assert.ok(first.has(rel), `missing output ${rel}`);
    });

    await t.step("the built cc_binary runs and prints its greeting", async () => {
      const out = await new Deno.Command(`${ws.dir}/bazel-bin/hello`, { args: ["deno"] }).output();
      assert.equal(out.code, 0);
      assert.equal(new TextDecoder().decode(out.stdout), "hello, deno!\ntriangle(10) = 55\n");
    });

    await t.step("bazel test //... passes (only the test spawns run)", async () => {
      const r = await runBazelOk(ws, ["test", "//..."]);
      assert.match(r.stdout, /\/\/:hello_test\s+PASSED/);
      assert.match(r.stdout, /1 test passes/);
      assert.equal(r.processes?.linuxSandbox, WORKSPACE_TEST_SPAWNS - WORKSPACE_BUILD_SPAWNS);
    });

    await t.step("an up-to-date rebuild executes nothing", async () => {
      const r = await runBazelOk(ws, ["build", "//..."]);
      assert.equal(r.processes?.linuxSandbox, 0, r.processes?.line ?? "");
    });

    await t.step("after bazel clean, a full test run rebuilds byte-identical outputs", async () => {
      await bazelClean(ws);
      const r = await runBazelOk(ws, ["test", "//..."]);
      assert.equal(r.processes?.linuxSandbox, WORKSPACE_TEST_SPAWNS, r.processes?.line ?? "");
      assert.match(r.stdout, /1 test passes/);
      assert.deepEqual(await outputsDigest(ws), first);
    });

    await t.step("cleanup leaves no Bazel server running", async () => {
      const pid = Number((await Deno.readTextFile(`${ws.outputBase}/server/server.pid.txt`)).trim());
      assert.ok(pid > 0);
      assert.ok(await running(pid), "the server should be running before cleanup");
      await ws.cleanup();
      assert.equal(await running(pid), false, `bazel server ${pid} still running`);
      assert.equal(await exists(ws.dir), false);
    });
  } finally {
    await ws.cleanup();
  }
});

/** Whether a process is alive (`ps`, since Deno grants /proc only with --allow-all). */
async function running(pid: number): Promise<boolean> {
  const out = await new Deno.Command("ps", { args: ["-p", String(pid), "-o", "stat="], stdout: "piped" })
    .output();
  const stat = new TextDecoder().decode(out.stdout).trim();
  return out.success && stat !== "" && !stat.startsWith("Z");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
