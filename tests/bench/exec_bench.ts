// Remote execution through real Cairn processes (all-in-one `config/local.json5`, plus split workers).
//
//   deno run -A tests/bench/exec_bench.ts [--quick]
//
// 1. Scheduler overhead: ~200 sequential Executes of distinct trivial actions (`/bin/true`, unique salt),
//    end-to-end latency minus the worker's own time (execution_metadata worker_start → worker_completed);
//    beside it, a bare gRPC round trip (FindMissingBlobs of nothing) on the same connection.
// 2. Throughput: 1,000 distinct `/bin/true` actions, 32 Executes in flight, 3 workers (the all-in-one's worker
//    plus 2 `config/split_worker.json5` processes); beside it, the ceiling: sandboxed `/bin/true` spawns per
//    second done directly with src/worker/sandbox.ts (the same bwrap flags), concurrency = cores.
// 3. Bazel `test //...` of tests/bazel_workspace from clean: local vs remote on the all-in-one (and remote
//    again after `bazel clean`, all cache hits).
import { createSandbox } from "../../src/worker/sandbox.ts";
import {
  type AllInOne,
  type Blob,
  buildAction,
  type BuiltAction,
  type CairnLauncher,
  ExecClient,
  startAllInOne,
  startSplitWorker,
  workerMs,
} from "../fixtures/exec_fixtures.ts";
import { bazelAvailable, bazelClean, prepareWorkspace, runBazelOk } from "../bazel_harness.ts";

const QUICK = Deno.args.includes("--quick");
const SEQUENTIAL = QUICK ? 50 : 200;
const THROUGHPUT = QUICK ? 200 : 1000;
const IN_FLIGHT = 32;
const EXTRA_WORKERS = 2;
const CORES = navigator.hardwareConcurrency || 1;

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

function line(label: string, samples: readonly number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  return `${label.padEnd(52)} p50 ${pct(s, 0.5).toFixed(2).padStart(7)} ms   p99 ${
    pct(s, 0.99).toFixed(2).padStart(7)
  } ms   (n=${s.length})`;
}

function trueAction(salt: string): BuiltAction {
  return buildAction({ argv: ["/bin/true"], salt });
}

async function uploadAll(client: ExecClient, actions: readonly BuiltAction[]): Promise<void> {
  const blobs: Blob[] = actions.flatMap((a) => a.blobs);
  for (let i = 0; i < blobs.length; i += 500) await client.upload(blobs.slice(i, i + 500));
}

/** Sequential Executes: end-to-end ms and worker ms of each. */
async function overhead(
  client: ExecClient,
  tag: string,
  n: number,
): Promise<{ e2e: number[]; worker: number[] }> {
  const actions = Array.from({ length: n }, (_, i) => trueAction(`${tag}-${i}`));
  await uploadAll(client, actions);
  const e2e: number[] = [];
  const worker: number[] = [];
  for (const a of actions) {
    const t = performance.now();
    const run = await client.execute(a.actionDigest, { skipCacheLookup: true });
    const ms = performance.now() - t;
    const r = run.response.result;
    if (!r || r.exitCode !== 0 || (run.response.status?.code ?? 0) !== 0) {
      throw new Error(`action failed: ${run.response.status?.message} exit ${r?.exitCode}`);
    }
    e2e.push(ms);
    worker.push(workerMs(r.executionMetadata));
  }
  return { e2e, worker };
}

async function grpcRoundTrips(client: ExecClient, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.cas.findMissingBlobs({ blobDigests: [] });
    out.push(performance.now() - t);
  }
  return out;
}

/** Runs `actions` with `inFlight` concurrent Executes; actions per second. */
async function throughput(
  client: ExecClient,
  actions: readonly BuiltAction[],
  inFlight: number,
): Promise<number> {
  let next = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < actions.length) {
      const a = actions[next++]!;
      const run = await client.execute(a.actionDigest, { skipCacheLookup: true });
      if (run.response.result?.exitCode !== 0) {
        throw new Error(`action failed: ${run.response.status?.message}`);
      }
    }
  }));
  return actions.length / ((performance.now() - t) / 1000);
}

/** Sandboxed `/bin/true` spawns per second straight through src/worker/sandbox.ts (no scheduler). */
async function bwrapCeiling(root: string, total: number, concurrency: number): Promise<number> {
  const sandbox = await createSandbox({ kind: "bwrap" });
  const dirs = await Promise.all(Array.from({ length: concurrency }, async (_, i) => {
    const d = `${root}/bwrap${i}`;
    await Deno.mkdir(`${d}/root`, { recursive: true });
    if (sandbox.actionUser) await Deno.chown(`${d}/root`, sandbox.actionUser.uid, sandbox.actionUser.gid);
    return d;
  }));
  let next = 0;
  const t = performance.now();
  await Promise.all(dirs.map(async (d) => {
    while (next++ < total) {
      const r = await sandbox.run({
        argv: ["/bin/true"],
        writableDir: d,
        cwd: `${d}/root`,
        env: { PATH: "/usr/bin:/bin" },
        stdoutPath: `${d}/stdout`,
        stderrPath: `${d}/stderr`,
        timeoutMs: 10_000,
      });
      if (r.exitCode !== 0) throw new Error(`bwrap /bin/true exited ${r.exitCode}`);
    }
  }));
  return total / ((performance.now() - t) / 1000);
}

/** Every `deno` process under `roots` (the launched main.ts and the worker processes it spawns). */
async function denoTree(roots: readonly number[]): Promise<number[]> {
  const parent = new Map<number, number>();
  const comm = new Map<number, string>();
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${e.name}/stat`).catch(() => "");
    const m = /^(\d+) \((.*)\) \S+ (\d+)/.exec(stat);
    if (m) {
      parent.set(Number(m[1]), Number(m[3]));
      comm.set(Number(m[1]), m[2]!);
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parent.get(p)) {
      if (roots.includes(p)) return true;
    }
    return false;
  };
  return [...parent.keys()].filter((pid) => comm.get(pid) === "deno" && inTree(pid));
}

/** CPU milliseconds (user + system, the processes themselves, not their sandboxes) of `pids`. */
async function cpuMs(pids: readonly number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0); // utime, stime (fields 14, 15)
  }
  return ticks * 10; // CLK_TCK 100
}

async function bazelFigures(cairn: AllInOne): Promise<void> {
  if (!(await bazelAvailable())) {
    console.log("bazel: not installed (apt-get install bazel-bootstrap), skipped");
    return;
  }
  const ws = await prepareWorkspace({ maxIdleSecs: 60 });
  try {
    await runBazelOk(ws, ["build", "//..."]); // starts and warms the Bazel server; not timed
    await bazelClean(ws);
    const local = await runBazelOk(ws, ["test", "//..."]);
    await bazelClean(ws);
    const flags = [`--remote_executor=${cairn.url}`, `--remote_cache=${cairn.url}`];
    const remote = await runBazelOk(ws, ["test", "//..."], { flags });
    await bazelClean(ws);
    const cached = await runBazelOk(ws, ["test", "//..."], { flags });
    const row = (label: string, r: typeof local) =>
      console.log(
        `${label.padEnd(52)} ${(r.wallMs / 1000).toFixed(2).padStart(7)} s    (${r.processes?.line ?? "?"})`,
      );
    row("bazel test //... from clean, local (linux-sandbox)", local);
    row("bazel test //... from clean, remote (all-in-one)", remote);
    row("bazel test //... after clean, remote cache hits", cached);
    console.log(`${"remote / local".padEnd(52)} ${(remote.wallMs / local.wallMs).toFixed(2).padStart(7)} x`);
  } finally {
    await ws.cleanup();
  }
}

const root = await Deno.makeTempDir({ prefix: "cairn_exec_bench_" });
console.log(`exec bench: ${CORES} cores, data in ${root}${QUICK ? " (quick)" : ""}`);
let cairn: AllInOne | undefined;
const workers: CairnLauncher[] = [];
try {
  cairn = await startAllInOne({ dataDir: `${root}/aio` });
  const client = new ExecClient(cairn.url);

  // 1. Overhead.
  await overhead(client, "warmup", 10);
  const rtt = await grpcRoundTrips(client, SEQUENTIAL);
  const seq = await overhead(client, "seq", SEQUENTIAL);
  const over = seq.e2e.map((ms, i) => ms - seq.worker[i]!);
  console.log("\n-- scheduler overhead (1 worker, sequential Execute of /bin/true) --");
  console.log(line("ceiling: gRPC round trip (FindMissingBlobs, empty)", rtt));
  console.log(line("end-to-end Execute → done", seq.e2e));
  console.log(line("worker time (worker_start → worker_completed)", seq.worker));
  console.log(line("overhead = end-to-end − worker time", over));
  const p50 = pct([...over].sort((a, b) => a - b), 0.5);
  console.log(`target: overhead p50 < 15 ms → ${p50 < 15 ? "met" : "MISSED"} (${p50.toFixed(2)} ms)`);

  // 3. Bazel (on the all-in-one alone: one worker, like `deno task start`).
  console.log("\n-- Bazel test workspace --");
  await bazelFigures(cairn);

  // 2. Throughput with 3 workers.
  for (let i = 0; i < EXTRA_WORKERS; i++) {
    workers.push(
      await startSplitWorker({
        casUrl: cairn.url,
        workerApiUrl: cairn.workerApiUrl,
        workerToken: cairn.workerToken,
        dataDir: `${root}/w${i}`,
      }),
    );
  }
  const warm = Array.from({ length: 30 }, (_, i) => trueAction(`tp-warm-${i}`));
  const actions = Array.from({ length: THROUGHPUT }, (_, i) => trueAction(`tp-${i}`));
  await uploadAll(client, [...warm, ...actions]);
  await throughput(client, warm, IN_FLIGHT); // every worker fetches its first inputs, connections open
  const pids = await denoTree([cairn.process.pid, ...workers.map((w) => w.pid)]);
  const cpuBefore = await cpuMs(pids);
  const rate = await throughput(client, actions, IN_FLIGHT);
  const cairnCpu = (await cpuMs(pids)) - cpuBefore;
  const ceiling = await bwrapCeiling(root, THROUGHPUT / 2, CORES);
  console.log(`\n-- throughput (${1 + EXTRA_WORKERS} workers, ${IN_FLIGHT} Executes in flight) --`);
  console.log(
    `${`ceiling: bwrap /bin/true spawns (sandbox.ts, ${CORES} at a time)`.padEnd(52)} ${
      ceiling.toFixed(1).padStart(7)
    } /s`,
  );
  console.log(
    `${`Cairn: ${THROUGHPUT} distinct /bin/true actions`.padEnd(52)} ${rate.toFixed(1).padStart(7)} /s`,
  );
  console.log(`${"Cairn / ceiling".padEnd(52)} ${(100 * rate / ceiling).toFixed(0).padStart(7)} %`);
  console.log(
    `${`Cairn's own CPU per action (${pids.length} deno processes)`.padEnd(52)} ${
      (cairnCpu / THROUGHPUT).toFixed(1).padStart(7)
    } ms  (sandbox spawn: ${(1000 * CORES / ceiling).toFixed(1)} ms of a core each)`,
  );

  for (const w of workers.splice(0)) await w.stop();
  const c = cairn;
  cairn = undefined;
  await c.stop();
} finally {
  for (const w of workers) await w.stop().catch(() => {});
  await cairn?.stop().catch(() => {});
  await new Deno.Command("chmod", { args: ["-R", "u+w", root], stdout: "null", stderr: "null" }).output();
  await Deno.remove(root, { recursive: true });
}
