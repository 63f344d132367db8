/**
 * Scheduler replicas sharing their state in Redis (`experimental_backend: { redis }`), end to end: a real
 * `redis-server`, a CAS process, two scheduler processes started from `config/replicated/scheduler.json5`,
 * and real worker processes (`config/split_worker.json5`, bwrap sandbox).
 *
 * Actions here wait for a `go` file the test drops into their input root, so each test decides when a run
 * may finish (no timing assumptions). A worker reaches the replicas through a small fail-over TCP proxy
 * (the first backend that accepts a connection, as a load balancer would), so when its replica is killed
 * it reconnects to the other one.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/redis_scheduler_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ExecutionStage_Value } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { Operation } from "../src/gen/google/longrunning/operations_pb.ts";
import { freeLoopbackPort, type RedisServer, startRedis } from "./fixtures/backends.ts";
import { type CairnProcess, memoryCacheConfig, startCairnProcess } from "./fixtures/cairn_process.ts";
import {
  type BuiltAction,
  type CairnLauncher,
  ExecClient,
  type ExecutionRun,
  metadataOf,
  shellAction,
  startSplitWorker,
} from "./fixtures/exec_fixtures.ts";
import { waitUntil, withTimeout } from "./fixtures/wait.ts";
import { Code } from "../src/util/error.ts";

const REPLICA_CONFIG = new URL("../config/replicated/scheduler.json5", import.meta.url);

/** An action that runs until the test drops `go` into its input root, then prints a per-run stamp. */
function gatedAction(salt: string): BuiltAction {
  return shellAction("while [ ! -e go ]; do sleep 0.05; done; date +%s%N", { salt });
}

/** A TCP proxy to the first backend that accepts a connection (what a load balancer in front of replicas does). */
class FailoverProxy {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #conns = new Set<Deno.Conn>();
  readonly #accepting: Promise<void>;
  readonly #pipes = new Set<Promise<void>>();
  backends: number[];

  constructor(backends: number[]) {
    this.backends = backends;
    this.#accepting = (async () => {
      try {
        for await (const conn of this.#listener) {
          this.#conns.add(conn);
          const p = this.#serve(conn);
          this.#pipes.add(p);
          p.finally(() => this.#pipes.delete(p));
        }
      } catch {
        // listener closed
      }
    })();
  }

  get url(): string {
    return `grpc://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  async #serve(down: Deno.Conn): Promise<void> {
    let up: Deno.Conn | undefined;
    for (const port of this.backends) {
      try {
        up = await Deno.connect({ hostname: "127.0.0.1", port });
        break;
      } catch {
        // refused: try the next replica
      }
    }
    const close = (c: Deno.Conn | undefined) => {
      if (c === undefined) return;
      this.#conns.delete(c);
      try {
        c.close();
      } catch {
        // closed already
      }
    };
    if (up === undefined) return close(down);
    this.#conns.add(up);
    await Promise.race([
      down.readable.pipeTo(up.writable).catch(() => {}),
      up.readable.pipeTo(down.writable).catch(() => {}),
    ]);
    close(down);
    close(up);
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const c of [...this.#conns]) {
      try {
        c.close();
      } catch {
        // closed already
      }
    }
    this.#conns.clear();
    await this.#accepting;
    await Promise.all([...this.#pipes]);
  }
}

/** Processes of one test, stopped in reverse order. */
class Cluster {
  readonly cleanups: (() => Promise<unknown>)[] = [];
  readonly token = crypto.randomUUID();
  readonly prefix = `test-${crypto.randomUUID()}/`;
  dir = "";

  async init(): Promise<void> {
    this.dir = await Deno.makeTempDir({ prefix: "cairn_rsched_" });
    this.cleanups.push(() => Deno.remove(this.dir, { recursive: true }));
  }

  async cas(): Promise<CairnProcess> {
    const cas = await startCairnProcess({ config: memoryCacheConfig({ verify: false }) });
    this.cleanups.push(() => cas.stop());
    return cas;
  }

  async replica(redisUrl: string, casUrl: string, extraEnv: Record<string, string> = {}): Promise<Replica> {
    const proc = await startCairnProcess({
      config: await Deno.readTextFile(REPLICA_CONFIG),
      env: {
        SHARED_REDIS_URL: redisUrl,
        CAIRN_CAS_ENDPOINT: casUrl,
        CAIRN_SCHEDULER_LISTEN: "127.0.0.1:0",
        CAIRN_WORKER_API_LISTEN: "127.0.0.1:0",
        CAIRN_WORKER_TOKEN: this.token,
        CAIRN_SCHEDULER_PREFIX: this.prefix,
        ...extraEnv,
      },
    });
    // A killed replica's stop() reports its non-zero exit; that is expected there.
    this.cleanups.push(() => proc.stop().catch((err) => proc.alive() ? Promise.reject(err) : undefined));
    const workerApi = proc.servers.find((s) => s.index === 1)!;
    return {
      process: proc,
      client: new ExecClient(proc.url),
      workerApiPort: workerApi.port,
      workerApiUrl: `grpc://127.0.0.1:${workerApi.port}`,
    };
  }

  async worker(casUrl: string, workerApiUrl: string, name: string): Promise<Worker> {
    const dataDir = `${this.dir}/${name}`;
    const launcher = await startSplitWorker({ casUrl, workerApiUrl, dataDir, workerToken: this.token });
    this.cleanups.push(() => launcher.stop().catch(() => launcher.kill()));
    return { launcher, dataDir };
  }

  async stop(): Promise<void> {
    for (const c of this.cleanups.reverse()) await c().catch((err) => console.error(err));
  }
}

interface Replica {
  readonly process: CairnProcess;
  readonly client: ExecClient;
  readonly workerApiPort: number;
  readonly workerApiUrl: string;
}

interface Worker {
  readonly launcher: CairnLauncher;
  readonly dataDir: string;
}

/** Input roots of actions running on a worker now. */
async function runningRoots(worker: Worker): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(`${worker.dataDir}/work/actions`)) {
      if (e.isDirectory) out.push(`${worker.dataDir}/work/actions/${e.name}/root`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

/** Waits until exactly `n` gated actions run on `worker`, and returns their input roots. */
async function waitRunning(worker: Worker, n: number, what: string): Promise<string[]> {
  return await waitUntil(async () => {
    const roots = await runningRoots(worker);
    if (roots.length !== n) return false;
    for (const r of roots) {
      try {
        await Deno.stat(r);
      } catch {
        return false;
      }
    }
    return roots;
  }, { what, intervalMs: 25 });
}

async function release(root: string): Promise<void> {
  await Deno.writeTextFile(`${root}/go`, "");
}

/** Execute that resolves `named` with the operation name as soon as the first Operation arrives. */
function executeNamed(
  client: ExecClient,
  action: BuiltAction,
): { named: Promise<string>; executing: Promise<void>; run: Promise<ExecutionRun> } {
  const named = Promise.withResolvers<string>();
  const executing = Promise.withResolvers<void>();
  const run = client.execute(action.actionDigest, {
    skipCacheLookup: true,
    onOperation: (op: Operation) => {
      named.resolve(op.name);
      if (metadataOf(op)?.stage === ExecutionStage_Value.EXECUTING) executing.resolve();
    },
  });
  run.then(() => executing.resolve(), (err) => {
    named.reject(err);
    executing.reject(err);
  });
  named.promise.catch(() => {});
  executing.promise.catch(() => {});
  return { named: named.promise, executing: executing.promise, run };
}

function stdoutOf(run: ExecutionRun): string {
  const r = run.response.result;
  assert.ok(r, `no result: ${run.response.status?.message}`);
  assert.equal(r.exitCode, 0, `exit code ${r.exitCode}: ${run.response.status?.message}`);
  return new TextDecoder().decode(r.stdoutRaw);
}

async function stdoutText(cas: ExecClient, run: ExecutionRun): Promise<string> {
  const r = run.response.result;
  assert.ok(r, `no result: ${run.response.status?.message}`);
  assert.equal(r.exitCode, 0, `exit code ${r.exitCode}: ${run.response.status?.message}`);
  return r.stdoutRaw.length > 0 ? stdoutOf(run) : await cas.readText(r.stdoutDigest);
}

Deno.test({
  name: "redis scheduler replicas share one queue: cross-replica execution, WaitExecution, dedup, fail-over",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const cluster = new Cluster();
  let redis: RedisServer | undefined;
  let proxy: FailoverProxy | undefined;
  try {
    await cluster.init();
    redis = await startRedis();
    const cas = await cluster.cas();
    const casClient = new ExecClient(cas.url);
    // A generous lease: on a loaded machine the worker's reconnect must not race the lease expiry.
    const env = { CAIRN_SCHEDULER_WORKER_TIMEOUT_S: "20" };
    const a = await cluster.replica(redis.url, cas.url, env);
    const b = await cluster.replica(redis.url, cas.url, env);
    const w1 = await cluster.worker(cas.url, b.workerApiUrl, "w1");

    await t.step(
      "Execute through A runs on the worker attached to B; WaitExecution on B follows it",
      async () => {
        const action = gatedAction("cross");
        await casClient.upload(action.blobs);
        const exec = executeNamed(a.client, action);
        const name = await withTimeout(exec.named, "the operation name from A");
        const waited = b.client.waitExecution(name);
        const [root] = await waitRunning(w1, 1, "the action on w1 (attached to B)");
        await release(root!);
        const [viaA, viaB] = await withTimeout(Promise.all([exec.run, waited]), "both streams to finish");
        assert.equal(viaA.name, name);
        assert.equal(viaB.name, name);
        const out = await stdoutText(casClient, viaA);
        assert.match(out, /^\d+\n$/);
        assert.equal(await stdoutText(casClient, viaB), out);
        assert.match(viaA.response.result?.executionMetadata?.worker ?? "", /./);
      },
    );

    await t.step(
      "the same action through A and through B runs once (in-flight dedup across replicas)",
      async () => {
        const action = gatedAction("dedup");
        await casClient.upload(action.blobs);
        const first = executeNamed(a.client, action);
        await withTimeout(first.executing, "the first Execute to reach EXECUTING");
        const second = executeNamed(b.client, action);
        const [n1, n2] = await withTimeout(Promise.all([first.named, second.named]), "both operation names");
        assert.notEqual(n1, n2);
        const roots = await waitRunning(w1, 1, "one run of the action");
        // The second operation is merged: it reports the running action, not a queued copy.
        await withTimeout(second.executing, "the merged operation to report EXECUTING");
        assert.equal((await runningRoots(w1)).length, 1);
        await release(roots[0]!);
        const [r1, r2] = await withTimeout(Promise.all([first.run, second.run]), "both Executes to finish");
        assert.equal(await stdoutText(casClient, r2), await stdoutText(casClient, r1));
      },
    );

    await t.step(
      "kill -9 of the worker's replica: it moves to the other one and the action completes once",
      async () => {
        // w1 leaves; w2 reaches the replicas through the fail-over proxy and lands on A.
        await w1.launcher.stop();
        proxy = new FailoverProxy([a.workerApiPort, b.workerApiPort]);
        const w2 = await cluster.worker(cas.url, proxy.url, "w2");
        const action = gatedAction("failover");
        await casClient.upload(action.blobs);
        const exec = executeNamed(a.client, action);
        const name = await withTimeout(exec.named, "the operation name from A");
        const [root] = await waitRunning(w2, 1, "the action on w2 (attached to A)");
        const connectedBefore = w2.launcher.log.match(/\[worker 0\] Connected/g)?.length ?? 0;
        const killedAt = Date.now();
        Deno.kill(a.process.pid, "SIGKILL");
        await assert.rejects(exec.run); // the client's stream to A is cut
        // The worker comes back through the proxy (now B) and B re-adopts the running action.
        await waitUntil(
          () => (w2.launcher.log.match(/\[worker 0\] Connected/g)?.length ?? 0) > connectedBefore,
          { what: "w2 to reconnect", intervalMs: 25 },
        );
        await waitUntil(() => /re-adopted/.test(b.process.logs()), { what: "B to re-adopt the action" });
        const waited = b.client.waitExecution(name);
        assert.deepEqual(await runningRoots(w2), [root]);
        await release(root!);
        const run = await withTimeout(waited, "WaitExecution on B to finish");
        assert.equal(run.name, name);
        const out = await stdoutText(casClient, run);
        assert.match(out, /^\d+\n$/);
        // The result is the first run's: it started before A died (re-adopted, not rerun).
        const meta = run.response.result?.executionMetadata;
        assert.ok(meta?.workerStartTimestamp);
        assert.ok(timestampMs(meta.workerStartTimestamp) < killedAt, "the result comes from a rerun");
        await waitUntil(async () => (await runningRoots(w2)).length === 0, { what: "w2 to be idle" });
        // And GetOperation on B agrees.
        const op = await b.client.operations.getOperation({ name });
        assert.equal(op.done, true);
      },
    );
  } finally {
    await cluster.stop();
    await proxy?.close();
    await redis?.stop();
  }
});

/** A redis-server with AOF persistence (`appendfsync always`) in `dir`, on `port`; `kill()` is a SIGKILL. */
async function startPersistentRedis(dir: string, port: number): Promise<{ kill(): Promise<void> }> {
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("Ready to accept connections")) {
    const { done, value } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`redis-server did not start on port ${port}:\n${text}`);
    }
    text += value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  return {
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone already
      }
      await child.status;
      await drained;
    },
  };
}

Deno.test({
  name:
    "redis scheduler: a Redis restart keeps operations when persisted; when its state is lost clients execute again",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const cluster = new Cluster();
  let redis: { kill(): Promise<void> } | undefined;
  try {
    await cluster.init();
    const redisDir = `${cluster.dir}/redis`;
    await Deno.mkdir(redisDir);
    const port = freeLoopbackPort();
    redis = await startPersistentRedis(redisDir, port);
    const redisUrl = `redis://127.0.0.1:${port}`;
    const cas = await cluster.cas();
    const casClient = new ExecClient(cas.url);
    const env = { CAIRN_SCHEDULER_WORKER_TIMEOUT_S: "20" };
    const a = await cluster.replica(redisUrl, cas.url, env);
    const b = await cluster.replica(redisUrl, cas.url, env);
    const w1 = await cluster.worker(cas.url, b.workerApiUrl, "w1");

    await t.step("AOF-persisted Redis killed and restarted mid-run: the operation completes", async () => {
      const action = gatedAction("persisted");
      await casClient.upload(action.blobs);
      const exec = executeNamed(a.client, action);
      const name = await withTimeout(exec.named, "the operation name");
      const [root] = await waitRunning(w1, 1, "the action on w1");
      await redis!.kill();
      redis = await startPersistentRedis(redisDir, port);
      await release(root!);
      const run = await withTimeout(exec.run, "the Execute stream on A to finish");
      const out = await stdoutText(casClient, run);
      assert.match(out, /^\d+\n$/);
      const waited = await withTimeout(b.client.waitExecution(name), "WaitExecution on B");
      assert.equal(await stdoutText(casClient, waited), out);
    });

    await t.step(
      "Redis restarted empty: the stream ends UNAVAILABLE, the old run is killed, Execute again works",
      async () => {
        const action = gatedAction("lost");
        await casClient.upload(action.blobs);
        const exec = executeNamed(a.client, action);
        await waitRunning(w1, 1, "the action on w1");
        await redis!.kill();
        await Deno.remove(redisDir, { recursive: true });
        await Deno.mkdir(redisDir);
        redis = await startPersistentRedis(redisDir, port);
        const lost = await withTimeout(exec.run, "the Execute stream on A to end");
        assert.equal(lost.response.status?.code, Code.Unavailable, lost.response.status?.message ?? "");
        assert.match(lost.response.status?.message ?? "", /gone from the scheduler state/);
        // Nobody holds the old run any more: B kills it.
        await waitUntil(async () => (await runningRoots(w1)).length === 0, {
          what: "the orphaned run to be killed",
        });
        const again = executeNamed(a.client, action);
        const [root] = await waitRunning(w1, 1, "the action to run again");
        await release(root!);
        const run = await withTimeout(again.run, "the second Execute to finish");
        assert.match(await stdoutText(casClient, run), /^\d+\n$/);
      },
    );
  } finally {
    await cluster.stop();
    await redis?.kill();
  }
});

Deno.test({
  name:
    "redis scheduler: a worker killed mid-run loses its lease; the action reruns once on another replica's worker",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const cluster = new Cluster();
  let redis: RedisServer | undefined;
  try {
    await cluster.init();
    redis = await startRedis();
    const cas = await cluster.cas();
    const casClient = new ExecClient(cas.url);
    const env = { CAIRN_SCHEDULER_WORKER_TIMEOUT_S: "2" };
    const a = await cluster.replica(redis.url, cas.url, env);
    const b = await cluster.replica(redis.url, cas.url, env);
    const w1 = await cluster.worker(cas.url, a.workerApiUrl, "w1");
    const action = gatedAction("worker-dies");
    await casClient.upload(action.blobs);
    const exec = executeNamed(a.client, action);
    await waitRunning(w1, 1, "the action on w1 (attached to A)");
    const w2 = await cluster.worker(cas.url, b.workerApiUrl, "w2");
    // A crash: SIGKILL the worker process itself first (its parent would stop it gracefully, reporting the
    // killed action as finished), then the parent. Its sandbox dies with it (bwrap --die-with-parent).
    const workerPid = Number(/cairn: worker 0 started \(pid (\d+)\)/.exec(w1.launcher.log)?.[1]);
    assert.ok(workerPid > 0, w1.launcher.log);
    const killedAt = Date.now();
    Deno.kill(workerPid, "SIGKILL");
    await w1.launcher.kill();
    // The lease lapses (2 s), the sweeping replica requeues it, and B's worker takes it.
    const [root] = await waitRunning(w2, 1, "the rerun on w2 (attached to B)").catch((err) => {
      throw new Error(
        `${err.message}\n--- A:\n${a.process.logs()}\n--- B:\n${b.process.logs()}\n--- w2:\n${w2.launcher.log}`,
      );
    });
    await release(root!);
    const run = await withTimeout(exec.run, "the Execute stream on A to finish");
    assert.match(await stdoutText(casClient, run), /^\d+\n$/);
    const meta = run.response.result?.executionMetadata;
    assert.ok(meta?.workerStartTimestamp);
    assert.ok(timestampMs(meta.workerStartTimestamp) > killedAt, "the result must come from the rerun");
    await waitUntil(async () => (await runningRoots(w2)).length === 0, { what: "w2 to be idle" });
  } finally {
    await cluster.stop();
    await redis?.stop();
  }
});
