/**
 * Security regression tests of the sandboxed worker, end to end through the real `main.ts` running the
 * shipped all-in-one config (`config/local.json5`: CAS, AC, scheduler, one bwrap worker process) on
 * loopback, with actions submitted by a real gRPC client:
 *
 * - host files never leave through output paths: a symlinked parent directory (`d -> /etc` with output
 *   `d/shadow`, `d -> <server dir>` with output `d/cairn.json5`, `e -> /` with output directory
 *   `e/etc/ssh`), a symlink as the output itself, symlinks inside output directories, hard links to host
 *   files (EXDEV across the sandbox's mounts), a FIFO output (must not hang the worker);
 * - `limits`: a sparse 1 GiB file over `max_output_bytes`, a file past `max_file_size_bytes`, stdout past
 *   `max_output_bytes`, a fork bomb bounded by `max_processes` with the server still answering,
 *   `max_memory_bytes` as RLIMIT_DATA and the size of the sandbox's /tmp;
 * - a SIGKILLed server's worker process exits, and the action it was running dies with it.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/security/sandbox_outputs_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import JSON5 from "json5";
import {
  ExecutionStage_Value,
  TreeSchema,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type CairnProcess, startCairnProcess } from "../fixtures/cairn_process.ts";
import { waitUntil } from "../fixtures/wait.ts";
import {
  buildAction,
  type BuiltAction,
  ExecClient,
  type ExecutionRun,
  freePort,
  metadataOf,
  REPO,
  RUN_PERMISSIONS,
  shellAction,
} from "../fixtures/exec_fixtures.ts";

const GRPC_OK = 0;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_FAILED_PRECONDITION = 9;
const MIB = 1024 * 1024;

/** `config/local.json5` as shipped, with `limits` set on its worker. */
async function localConfigWithLimits(limits: Record<string, unknown>): Promise<Record<string, unknown>> {
  const config = JSON5.parse(await Deno.readTextFile(`${REPO}config/local.json5`)) as {
    workers: { local: Record<string, unknown> }[];
  };
  config.workers[0]!.local.limits = limits;
  return config as unknown as Record<string, unknown>;
}

/**
 * Starts the all-in-one server with the given worker limits on ephemeral loopback ports, and waits until its
 * worker has connected (on a loaded machine the worker process can take longer than the scheduler's grace
 * for an action no worker can run).
 */
async function startServer(limits: Record<string, unknown>): Promise<CairnProcess> {
  const cairn = await startCairnProcess({
    config: await localConfigWithLimits(limits),
    permissions: RUN_PERMISSIONS,
    env: { CAIRN_LISTEN: "127.0.0.1:0", CAIRN_WORKER_API_PORT: String(freePort()) },
  });
  await waitUntil(() => / Connected to \S+ as /.test(cairn.logs()), {
    what: "the worker connected",
    timeoutMs: 120_000,
  }).catch(async (err) => {
    await cairn.stop();
    throw err;
  });
  return cairn;
}

async function run(client: ExecClient, action: BuiltAction): Promise<ExecutionRun> {
  await client.upload(action.blobs);
  return await client.execute(action.actionDigest, { skipCacheLookup: true });
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The digests among `digests` (hash/size) that the server's CAS holds. */
async function present(client: ExecClient, digests: { hash: string; size: number }[]): Promise<string[]> {
  const blobDigests = digests.map((d) => ({ hash: d.hash, sizeBytes: BigInt(d.size) }));
  const res = await client.cas.findMissingBlobs({ instanceName: "", blobDigests });
  const missing = new Set(res.missingBlobDigests.map((d) => d.hash));
  return digests.filter((d) => !missing.has(d.hash)).map((d) => d.hash);
}

/** Digests of every regular file under `dir` that the test can read (the host files an attack targets). */
async function fileDigests(dir: string, max = 200): Promise<{ hash: string; size: number; path: string }[]> {
  const out: { hash: string; size: number; path: string }[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (out.length >= max) return;
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p).catch(() => {});
      else if (e.isFile) {
        const bytes = await Deno.readFile(p).catch(() => undefined);
        if (bytes && bytes.length > 0) out.push({ hash: sha256(bytes), size: bytes.length, path: p });
      }
    }
  };
  await walk(dir);
  return out;
}

async function stderrOf(client: ExecClient, r: ExecutionRun): Promise<string> {
  const result = r.response.result;
  if (!result) return "";
  if (result.stderrRaw.length > 0) return new TextDecoder().decode(result.stderrRaw);
  return result.stderrDigest && result.stderrDigest.sizeBytes > 0n
    ? await client.readText(result.stderrDigest)
    : "";
}

function statusCode(r: ExecutionRun): number {
  return r.response.status?.code ?? GRPC_OK;
}

/** The SHA-256 of `size` zero bytes, streamed. */
function zerosDigest(size: number): { hash: string; size: number } {
  const hash = createHash("sha256");
  const chunk = new Uint8Array(MIB);
  for (let left = size; left > 0; left -= chunk.length) {
    hash.update(left >= chunk.length ? chunk : chunk.subarray(0, left));
  }
  return { hash: hash.digest("hex"), size };
}

Deno.test("security: host files never leave through output paths; output limits hold", async (t) => {
  const host = await Deno.makeTempDir({ prefix: "cairn_sec_host_" });
  let cairn: CairnProcess | undefined;
  try {
    // A host secret outside the sandbox, in the shape of /etc (etc/ssh/key, shadow).
    await Deno.mkdir(`${host}/etc/ssh`, { recursive: true });
    const secret = `host secret ${crypto.randomUUID()}\n`;
    await Deno.writeTextFile(`${host}/shadow`, secret);
    await Deno.writeTextFile(`${host}/etc/ssh/key`, `ssh ${secret}`);
    const hostDigests = await fileDigests(host);
    const etcShadow = await Deno.readFile("/etc/shadow").then((b) => ({ hash: sha256(b), size: b.length }));

    cairn = await startServer({
      max_output_bytes: "16mib",
      max_file_size_bytes: "2gib",
    });
    const client = new ExecClient(cairn.url);
    const serverFiles = await fileDigests(cairn.dir, 20);
    assert.ok(serverFiles.some((f) => f.path.endsWith("/cairn.json5")), "the server's config is a target");

    await t.step("a symlinked parent dir (d -> /etc, output d/shadow) is not followed", async () => {
      const r = await run(client, shellAction("rm -rf d && ln -s /etc d", { outputPaths: ["d/shadow"] }));
      assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
      const result = r.response.result!;
      assert.equal(result.exitCode, 0);
      assert.deepEqual(result.outputFiles, []);
      assert.deepEqual(result.outputSymlinks, []);
      assert.deepEqual(await present(client, [etcShadow]), [], "/etc/shadow reached the CAS");
    });

    await t.step(
      "a symlinked parent dir to a host dir and to the server's own dir is not followed",
      async () => {
        const r = await run(
          client,
          shellAction(`rm -rf d s && ln -s ${host} d && ln -s ${cairn!.dir} s`, {
            outputPaths: ["d/shadow", "s/cairn.json5", "d/etc"],
          }),
        );
        assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
        const result = r.response.result!;
        assert.equal(result.exitCode, 0);
        assert.deepEqual(result.outputFiles, []);
        assert.deepEqual(result.outputDirectories, []);
        assert.deepEqual(await present(client, [...hostDigests, ...serverFiles]), []);
      },
    );

    await t.step(
      "e -> / with output directory e/etc/ssh (and e/etc) collects nothing of the host",
      async () => {
        const r = await run(
          client,
          shellAction("rm -rf e && ln -s / e", { outputPaths: ["e/etc/ssh", "e/etc"] }),
        );
        assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
        const result = r.response.result!;
        assert.deepEqual(result.outputDirectories, []);
        assert.deepEqual(result.outputFiles, []);
        assert.deepEqual(await present(client, [etcShadow]), []);
        // The same with a host directory laid out like / (its etc/ssh/key is readable by the test).
        const r2 = await run(
          client,
          shellAction(`rm -rf e && ln -s ${host} e`, { outputPaths: ["e/etc/ssh"] }),
        );
        assert.deepEqual(r2.response.result!.outputDirectories, []);
        assert.deepEqual(await present(client, hostDigests), []);
      },
    );

    await t.step(
      "a symlink as the output is reported as a symlink; links in trees are SymlinkNodes",
      async () => {
        const r = await run(
          client,
          shellAction(
            `ln -s /etc/shadow f && ln -s ${host} dl && mkdir -p out && echo ok > out/ok && ln -s / out/root && ` +
              `ln -s ${host}/shadow out/secret`,
            { outputPaths: ["f", "dl", "out"] },
          ),
        );
        assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
        const result = r.response.result!;
        assert.deepEqual(
          result.outputSymlinks.map((s) => [s.path, s.target]).sort(),
          [["dl", host], ["f", "/etc/shadow"]],
        );
        assert.equal(result.outputDirectories.length, 1);
        const tree = await client.readMessage(TreeSchema, result.outputDirectories[0]!.treeDigest);
        assert.deepEqual(tree.root?.files.map((f) => f.name), ["ok"]);
        assert.deepEqual(
          tree.root?.symlinks.map((s) => [s.name, s.target]),
          [["root", "/"], ["secret", `${host}/shadow`]],
        );
        assert.deepEqual(await present(client, [etcShadow, ...hostDigests]), []);
      },
    );

    await t.step(
      "a hard link to a host file cannot be made in the sandbox (EXDEV across mounts)",
      async () => {
        const r = await run(
          client,
          shellAction("ln /etc/passwd hl; echo rc=$? >&2", { outputPaths: ["hl"] }),
        );
        const stderr = await stderrOf(client, r);
        assert.match(stderr, /Invalid cross-device link/);
        assert.match(stderr, /rc=1/);
        assert.deepEqual(r.response.result!.outputFiles, []);
      },
    );

    await t.step("a FIFO output fails the action instead of hanging the worker", async () => {
      const r = await run(client, shellAction("mkfifo p", { outputPaths: ["p"] }));
      assert.equal(statusCode(r), GRPC_FAILED_PRECONDITION);
      assert.match(r.response.status!.message, /Output p is not a regular file/);
    });

    await t.step(
      "a sparse 1 GiB file over max_output_bytes fails naming the limit; nothing of 1 GiB is stored",
      async () => {
        const r = await run(client, shellAction("truncate -s 1G big && echo made", { outputPaths: ["big"] }));
        assert.equal(statusCode(r), GRPC_RESOURCE_EXHAUSTED, r.response.status?.message ?? "");
        assert.equal(
          r.response.status!.message,
          `Output big is ${1024 * MIB} bytes, above limits.max_output_bytes ${16 * MIB}`,
        );
        assert.deepEqual(r.response.result?.outputFiles ?? [], []);
        assert.deepEqual(await present(client, [zerosDigest(1024 * MIB)]), []);
        // Not cached either: the same action runs again and fails again.
        const again = await client.execute(
          shellAction("truncate -s 1G big && echo made", { outputPaths: ["big"] }).actionDigest,
        );
        assert.equal(again.response.cachedResult, false);
      },
    );

    await t.step("a file past max_file_size_bytes is refused by the kernel (SIGXFSZ)", async () => {
      const r = await run(client, shellAction("truncate -s 3G huge", { outputPaths: ["huge"] }));
      assert.equal(statusCode(r), GRPC_OK);
      assert.notEqual(r.response.result!.exitCode, 0);
      assert.match(r.response.message, /limits\.max_file_size_bytes 2147483648/);
      // truncate created the file, then the kernel refused to grow it: it stays empty.
      assert.deepEqual(r.response.result!.outputFiles.map((f) => [f.path, f.digest?.sizeBytes]), [[
        "huge",
        0n,
      ]]);
    });

    await t.step("stdout past max_output_bytes kills the action with RESOURCE_EXHAUSTED", async () => {
      const r = await run(client, buildAction({ argv: ["/usr/bin/yes", "spam"] }));
      assert.equal(statusCode(r), GRPC_RESOURCE_EXHAUSTED, r.response.status?.message ?? "");
      assert.match(r.response.status!.message, /stdout and stderr passed limits\.max_output_bytes 16777216/);
      assert.ok(Number(r.response.result!.stdoutDigest!.sizeBytes) <= 16 * MIB);
    });

    await t.step("ordinary outputs still work", async () => {
      const r = await run(
        client,
        shellAction("mkdir -p o && echo hi > o/a && echo f > f", { outputPaths: ["o", "f"] }),
      );
      assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
      const result = r.response.result!;
      assert.deepEqual(result.outputFiles.map((f) => f.path), ["f"]);
      assert.equal(await client.readText(result.outputFiles[0]!.digest), "f\n");
      assert.equal(result.outputDirectories.length, 1);
    });
  } finally {
    await cairn?.stop();
    await Deno.remove(host, { recursive: true });
  }
});

/** Whether process `pid` exists and is not a zombie. */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** PIDs of processes whose command line contains `needle` (read from /proc). */
async function pidsWith(needle: string): Promise<number[]> {
  const out: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (cmd.replaceAll("\0", " ").includes(needle)) out.push(Number(e.name));
  }
  return out;
}

/** Polls `check` every 50 ms until true; fails after `ms` (an upper bound, not a wait). */
async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise<void>((r) => setTimeout(r, 50));
  }
}

Deno.test("security: max_processes bounds a fork bomb, max_memory_bytes holds; a SIGKILLed server's worker and sandboxes exit", async (t) => {
  const cairn = await startServer({ max_processes: 64, max_memory_bytes: "256mib" });
  let killed = false;
  let workerPid = 0;
  try {
    const client = new ExecClient(cairn.url);

    await t.step("a fork bomb of 10000 sleeping children is bounded by max_processes 64", async () => {
      const bomb = shellAction(
        "i=0; while [ $i -lt 10000 ]; do sleep 1000 & i=$((i+1)); echo $i; done; wait",
        { timeoutMs: 120_000 },
      );
      const r = await run(client, bomb);
      assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
      const result = r.response.result!;
      assert.notEqual(result.exitCode, 0, "the bomb should have failed to fork");
      const stdout = result.stdoutDigest && result.stdoutDigest.sizeBytes > 0n
        ? await client.readText(result.stdoutDigest)
        : "";
      const spawned = stdout.trim() === "" ? 0 : Number(stdout.trim().split("\n").at(-1));
      assert.ok(spawned < 64, `spawned ${spawned} children`);
      assert.match(await stderrOf(client, r), /fork/i);
      // The server answers and runs the next action (no fork needed) at once.
      const echo = await run(client, buildAction({ argv: ["/bin/echo", "still-here"] }));
      assert.equal(echo.response.result?.exitCode, 0, echo.response.status?.message ?? "");
      assert.equal(await client.readText(echo.response.result!.stdoutDigest), "still-here\n");
    });

    await t.step("max_memory_bytes: RLIMIT_DATA of the action and the size of its /tmp", async () => {
      const r = await run(
        client,
        shellAction("ulimit -d; head -c 300000000 /dev/zero > /tmp/fill; echo rc=$?", { timeoutMs: 60_000 }),
      );
      assert.equal(statusCode(r), GRPC_OK, r.response.status?.message ?? "");
      assert.equal(await client.readText(r.response.result!.stdoutDigest), "262144\nrc=1\n");
      assert.match(await stderrOf(client, r), /No space left on device/);
    });

    await t.step("SIGKILL of the server: its worker process and the running sandbox exit", async () => {
      workerPid = Number(/cairn: worker 0 started \(pid (\d+)\)/.exec(cairn.logs())?.[1]);
      assert.ok(workerPid > 0, `no worker pid in the log:\n${cairn.logs()}`);
      assert.ok(await alive(workerPid));
      const marker = String(800_000 + Math.floor(Math.random() * 99_999));
      const sleeper = buildAction({ argv: ["/bin/sleep", marker] });
      await client.upload(sleeper.blobs);
      const executing = new Promise<void>((resolve) => {
        client.execute(sleeper.actionDigest, {
          skipCacheLookup: true,
          onOperation: (op) => {
            if (metadataOf(op)?.stage === ExecutionStage_Value.EXECUTING) resolve();
          },
        }).catch(() => {}); // the stream breaks when the server dies
      });
      await executing;
      await until(
        "the sandboxed sleep runs",
        async () => (await pidsWith(`/bin/sleep ${marker}`)).length > 0,
      );
      Deno.kill(cairn.pid, "SIGKILL");
      killed = true;
      await until("the worker process exits", async () => !(await alive(workerPid)));
      await until("the sandboxed sleep is gone", async () => {
        for (const pid of await pidsWith(`/bin/sleep ${marker}`)) if (await alive(pid)) return false;
        return true;
      });
    });
  } finally {
    // Should the worker have outlived the server (the bug this guards against), end it: it holds the
    // server's output pipes open.
    if (killed && workerPid > 0 && await alive(workerPid)) Deno.kill(workerPid, "SIGKILL");
    if (killed) await cairn.stop().catch(() => {}); // exits non-zero after SIGKILL; removes its directory
    else await cairn.stop();
  }
});
