/**
 * Remote execution end to end through one real all-in-one Cairn process (`config/local.json5`: CAS, action
 * cache, cache_lookup → simple scheduler, one bwrap-sandboxed worker process) and a real connect gRPC client:
 * stages, outputs, the action cache, deduplication, input and output-path errors, timeouts, the sandbox,
 * WaitExecution and CancelOperation.
 */
import assert from "node:assert/strict";
import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  ExecutionStage_Value,
  TreeSchema,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { PreconditionFailureSchema } from "../src/gen/google/rpc/error_details_pb.ts";
import {
  type AllInOne,
  blobSubject,
  buildAction,
  type BuiltAction,
  ExecClient,
  type ExecutionRun,
  metadataOf,
  shellAction,
  startAllInOne,
  treeFiles,
} from "./fixtures/exec_fixtures.ts";

const GRPC_OK = 0;
const GRPC_CANCELLED = 1;
const GRPC_DEADLINE_EXCEEDED = 4;

/** Command lines of every process on the machine (`ps`: reading /proc needs more than the test's permissions). */
async function processList(): Promise<string[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped", stderr: "null" })
    .output();
  assert.ok(out.success, "ps failed");
  return new TextDecoder().decode(out.stdout).split("\n");
}

/** Polls `ps` up to `ms` (an upper bound for a loaded machine) for no process whose command line contains
 * `needle`. */
async function assertNoProcess(needle: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = (await processList()).filter((l) => l.includes(needle));
    if (left.length === 0) return;
    if (Date.now() > deadline) assert.fail(`processes left behind: ${left.join(" | ")}`);
    await new Promise<void>((r) => setTimeout(() => r(), 100));
  }
}

async function uploadAndRun(
  client: ExecClient,
  action: BuiltAction,
  opts: Parameters<ExecClient["execute"]>[1] = {},
): Promise<ExecutionRun> {
  await client.upload(action.blobs);
  return await client.execute(action.actionDigest, opts);
}

/** The run's ActionResult; asserts the ExecuteResponse status is OK. */
function okResult(run: ExecutionRun) {
  assert.equal(
    run.response.status?.code ?? GRPC_OK,
    GRPC_OK,
    `status: ${run.response.status?.message}`,
  );
  assert.ok(run.response.result, "ExecuteResponse without result");
  return run.response.result;
}

async function stdoutOf(client: ExecClient, run: ExecutionRun): Promise<string> {
  const r = okResult(run);
  if (r.stdoutRaw.length > 0) return new TextDecoder().decode(r.stdoutRaw);
  return r.stdoutDigest ? await client.readText(r.stdoutDigest) : "";
}

async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("expected the call to fail");
}

Deno.test("remote execution end to end on a real all-in-one Cairn", async (t) => {
  await Deno.stat("/bin/bash"); // the network probe below needs bash's /dev/tcp
  const dir = await Deno.makeTempDir({ prefix: "cairn_exec_e2e_" });
  let cairn: AllInOne | undefined;
  try {
    cairn = await startAllInOne({ dataDir: `${dir}/data` });
    const client = new ExecClient(cairn.url);

    const main = shellAction(
      "mkdir -p out/dir/sub && tr a-z A-Z < in/words.txt > out/upper.txt && echo one > out/dir/a.txt && " +
        "echo two > out/dir/sub/b.txt && ./tool.sh && echo to-stderr >&2",
      {
        inputs: {
          "in/words.txt": { content: "alpha\nbeta\n" },
          "tool.sh": { content: "#!/bin/sh\necho tool-ran\n", executable: true },
        },
        outputPaths: ["out/upper.txt", "out/dir"],
      },
    );
    let first: ExecutionRun | undefined;

    await t.step("Execute streams its stages and ends with a done ExecuteResponse", async () => {
      first = await uploadAndRun(client, main);
      assert.equal(first.stages.at(-1), ExecutionStage_Value.COMPLETED);
      const earlier = first.stages.slice(0, -1);
      assert.ok(
        earlier.some((s) =>
          s === ExecutionStage_Value.QUEUED || s === ExecutionStage_Value.EXECUTING ||
          s === ExecutionStage_Value.CACHE_CHECK
        ),
        `stages: ${first.stages.join(",")}`,
      );
      assert.ok(first.operations.slice(0, -1).every((op) => !op.done));
      assert.ok(first.operations.every((op) => op.name === first!.name));
      assert.match(first.name, /operations\//);
      assert.equal(metadataOf(first.operations[0]!)?.actionDigest?.hash, main.actionDigest.hash);
      assert.equal(first.response.cachedResult, false);
      const result = okResult(first);
      assert.equal(result.exitCode, 0);
    });

    await t.step("outputs: a file, a directory as a Tree, stdout and stderr are in the CAS", async () => {
      assert.ok(first);
      const result = okResult(first);
      assert.deepEqual(result.outputFiles.map((f) => f.path), ["out/upper.txt"]);
      assert.equal(await client.readText(result.outputFiles[0]!.digest), "ALPHA\nBETA\n");
      assert.deepEqual(result.outputDirectories.map((d) => d.path), ["out/dir"]);
      const tree = await client.readMessage(TreeSchema, result.outputDirectories[0]!.treeDigest);
      const files = treeFiles(tree);
      assert.deepEqual([...files.keys()].sort(), ["a.txt", "sub/b.txt"]);
      assert.equal(await client.readText(files.get("a.txt")), "one\n");
      assert.equal(await client.readText(files.get("sub/b.txt")), "two\n");
      assert.equal(await stdoutOf(client, first), "tool-ran\n");
      const stderr = result.stderrRaw.length > 0
        ? new TextDecoder().decode(result.stderrRaw)
        : await client.readText(result.stderrDigest);
      assert.equal(stderr, "to-stderr\n");
      const meta = result.executionMetadata;
      assert.ok(meta?.workerStartTimestamp && meta.workerCompletedTimestamp, "no worker timestamps");
    });

    await t.step("an identical Execute is answered from the action cache", async () => {
      assert.ok(first);
      const again = await client.execute(main.actionDigest);
      assert.equal(again.response.cachedResult, true);
      // Answered without scheduling: CACHE_CHECK at most, never QUEUED or EXECUTING.
      assert.equal(again.stages.at(-1), ExecutionStage_Value.COMPLETED);
      assert.ok(
        again.stages.every((s) =>
          s === ExecutionStage_Value.CACHE_CHECK || s === ExecutionStage_Value.COMPLETED
        ),
        `stages: ${again.stages.join(",")}`,
      );
      assert.deepEqual(okResult(again).outputFiles, okResult(first).outputFiles);
      assert.deepEqual(okResult(again).outputDirectories, okResult(first).outputDirectories);
    });

    await t.step("skip_cache_lookup runs the action again", async () => {
      assert.ok(first);
      const rerun = await client.execute(main.actionDigest, { skipCacheLookup: true });
      assert.equal(rerun.response.cachedResult, false);
      const before = timestampMs(okResult(first).executionMetadata!.workerCompletedTimestamp!);
      const started = timestampMs(okResult(rerun).executionMetadata!.workerStartTimestamp!);
      assert.ok(started >= before, `re-run started ${started} before the first finished ${before}`);
      assert.equal(await stdoutOf(client, rerun), "tool-ran\n");
    });

    await t.step("a do_not_cache action is never answered from the cache", async () => {
      const action = shellAction("date +%s%N", { doNotCache: true });
      const a = await uploadAndRun(client, action);
      const b = await client.execute(action.actionDigest);
      assert.equal(a.response.cachedResult, false);
      assert.equal(b.response.cachedResult, false);
      assert.notEqual(
        await stdoutOf(client, a),
        await stdoutOf(client, b),
        "the second run was not a new run",
      );
    });

    await t.step("two concurrent identical Executes both succeed with the same result", async () => {
      const action = shellAction("sleep 0.5; date +%s%N", { salt: "concurrent" });
      await client.upload(action.blobs);
      const [a, b] = await Promise.all([
        client.execute(action.actionDigest),
        client.execute(action.actionDigest),
      ]);
      assert.equal(okResult(a).exitCode, 0);
      assert.equal(okResult(b).exitCode, 0);
      assert.deepEqual(
        okResult(a).stdoutDigest ?? okResult(a).stdoutRaw,
        okResult(b).stdoutDigest ?? okResult(b).stdoutRaw,
      );
      assert.equal(await stdoutOf(client, a), await stdoutOf(client, b));
    });

    await t.step("a missing input blob is FAILED_PRECONDITION naming it as MISSING", async () => {
      const action = shellAction("cat data.txt", {
        inputs: { "data.txt": { content: `never uploaded ${crypto.randomUUID()}` } },
      });
      const fileBlob = action.blobs.find((b) =>
        new TextDecoder().decode(b.bytes).startsWith("never uploaded")
      );
      assert.ok(fileBlob);
      await client.upload(action.blobs.filter((b) => b !== fileBlob));
      const err = await rejection(client.execute(action.actionDigest));
      assert.equal(err.code, ConnectCode.FailedPrecondition, err.message);
      const violations = err.findDetails(PreconditionFailureSchema).flatMap((d) => d.violations);
      assert.deepEqual(
        violations.map((v) => [v.type, v.subject]),
        [["MISSING", blobSubject(fileBlob.digest)]],
      );
    });

    await t.step("an output path escaping the input root is INVALID_ARGUMENT", async () => {
      const action = shellAction("echo x > ../x", { outputPaths: ["../x"] });
      await client.upload(action.blobs);
      const err = await rejection(client.execute(action.actionDigest));
      assert.equal(err.code, ConnectCode.InvalidArgument, err.message);
      assert.match(err.message, /\.\.\/x/);
    });

    await t.step("Action.timeout ends a long action with DEADLINE_EXCEEDED, quickly", async () => {
      const action = buildAction({ argv: ["/bin/sleep", "30"], timeoutMs: 1000 });
      const run = await uploadAndRun(client, action);
      assert.equal(run.response.status?.code, GRPC_DEADLINE_EXCEEDED, run.response.status?.message ?? "");
      assert.ok(run.elapsedMs < 10_000, `took ${run.elapsedMs} ms`);
    });

    await t.step("sandbox: an action cannot read a host file outside its inputs", async () => {
      const secretDir = `${dir}/secret`;
      await Deno.mkdir(secretDir, { mode: 0o755 });
      await Deno.chmod(dir, 0o755);
      const secret = `${secretDir}/host.txt`;
      await Deno.writeTextFile(secret, "host secret\n");
      await Deno.chmod(secret, 0o644);
      const run = await uploadAndRun(client, shellAction(`cat ${secret}`));
      const result = okResult(run);
      assert.notEqual(result.exitCode, 0);
      assert.equal(await stdoutOf(client, run), "");
      const stderr = result.stderrRaw.length > 0
        ? new TextDecoder().decode(result.stderrRaw)
        : await client.readText(result.stderrDigest);
      assert.match(stderr, /No such file or directory/);
    });

    await t.step("sandbox: an action cannot reach a loopback server", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      let accepted = 0;
      const accepting = (async () => {
        try {
          for await (const conn of listener) {
            accepted++;
            conn.close();
          }
        } catch { /* closed */ }
      })();
      try {
        const probe = ["-c", `echo > /dev/tcp/127.0.0.1/${port}`];
        // Outside the sandbox the same probe connects: the check below can tell.
        const host = await new Deno.Command("/bin/bash", { args: probe, stdout: "null", stderr: "null" })
          .output();
        assert.ok(host.success);
        const deadline = Date.now() + 30_000;
        while (accepted === 0 && Date.now() < deadline) {
          await new Promise<void>((r) => setTimeout(() => r(), 20));
        }
        assert.equal(accepted, 1);

        const run = await uploadAndRun(client, buildAction({ argv: ["/bin/bash", ...probe] }));
        assert.notEqual(okResult(run).exitCode, 0);
        // Not waiting for an event: time for a wrongly accepted connection to show.
        await new Promise<void>((r) => setTimeout(() => r(), 100));
        assert.equal(accepted, 1, "the sandboxed action connected to the host's loopback");
      } finally {
        listener.close();
        await accepting;
      }
    });

    await t.step("sandbox: an action leaves no process behind", async () => {
      const marker = `1021.${Math.floor(Math.random() * 1e6)}`;
      const run = await uploadAndRun(client, shellAction(`sleep ${marker} & echo started $!`));
      assert.equal(okResult(run).exitCode, 0);
      assert.match(await stdoutOf(client, run), /^started \d+\n$/);
      await assertNoProcess(`sleep ${marker}`);
    });

    await t.step("WaitExecution re-attaches to an operation after its Execute stream is gone", async () => {
      const action = shellAction("sleep 2; echo waited", { salt: "wait-execution" });
      await client.upload(action.blobs);
      const abort = new AbortController();
      let name = "";
      const aborted = client.execute(action.actionDigest, {
        signal: abort.signal,
        onOperation: (op) => {
          name = op.name;
          abort.abort();
        },
      });
      const err = await rejection(aborted);
      assert.equal(err.code, ConnectCode.Canceled, err.message);
      assert.notEqual(name, "");
      const run = await client.waitExecution(name);
      assert.equal(run.name, name);
      assert.equal(run.response.cachedResult, false);
      assert.equal(okResult(run).exitCode, 0);
      assert.equal(await stdoutOf(client, run), "waited\n");
    });

    await t.step("CancelOperation kills a running action; its operation completes CANCELLED", async () => {
      const marker = `30.${Math.floor(Math.random() * 1e6)}`;
      const action = buildAction({ argv: ["/bin/sleep", marker] });
      await client.upload(action.blobs);
      let cancelled: Promise<unknown> | undefined;
      const started = performance.now();
      const run = await client.execute(action.actionDigest, {
        onOperation: (op) => {
          if (cancelled || metadataOf(op)?.stage !== ExecutionStage_Value.EXECUTING) return;
          // Cancel once the action's own process runs (not just bwrap setting up), so the kill is what ends
          // it. (A kill during bwrap's setup can orphan the sandbox: reported, see src/worker/sandbox.ts.)
          cancelled = (async () => {
            const deadline = Date.now() + 30_000;
            while (!(await processList()).some((l) => l.trim().startsWith(`/bin/sleep ${marker}`))) {
              if (Date.now() > deadline) throw new Error("the action never started");
              await new Promise<void>((r) => setTimeout(() => r(), 50));
            }
            await client.operations.cancelOperation({ name: op.name });
          })();
        },
      });
      assert.ok(cancelled, "never saw EXECUTING");
      await cancelled;
      assert.equal(run.response.status?.code, GRPC_CANCELLED, run.response.status?.message ?? "");
      // The action sleeps 30 s: ending well before that means the cancel ended it.
      assert.ok(performance.now() - started < 25_000, "cancellation took too long");
      const op = await client.operations.getOperation({ name: run.name }).catch(() => undefined);
      if (op) assert.equal(op.done, true);
      await assertNoProcess(`sleep ${marker}`);
    });

    const server = cairn;
    cairn = undefined;
    await server.stop();
  } finally {
    await cairn?.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
