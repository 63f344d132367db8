// Scheduler overhead with in-process fake workers that answer instantly.
//
//   deno run -A tests/bench/scheduler_bench.ts
//
// 1. Scheduler only: addAction → result, sequential (p50/p99 latency).
// 2. Execution service (connect in-memory transport, Action/Command/input tree read from a memory CAS):
//    Execute → done Operation, sequential (p50/p99).
// 3. Throughput: 1,000 distinct actions submitted at once to 3 fake workers (actions/s).
// The ceiling printed beside them is a bare async-generator round trip in the same process.
import { create, type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  ActionSchema,
  CommandSchema,
  DirectorySchema,
  Execution,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Digest, digestOf } from "../../src/digest/digest.ts";
import { exitResponse, FakeWorker } from "../fixtures/fake_worker.ts";
import { SimpleScheduler } from "../../src/scheduler/simple_scheduler.ts";
import { actionRequest } from "../fixtures/test_actions.ts";
import { createExecutionService } from "../../src/service/execution_service.ts";
import { serviceClient } from "../fixtures/service_testing.ts";
import { putBytes } from "../../src/store/helpers.ts";
import { MemoryStore } from "../../src/store/memory_store.ts";

const SEQUENTIAL = 2000;
const THROUGHPUT = 1000;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function report(label: string, samples: number[]): void {
  const s = [...samples].sort((a, b) => a - b);
  console.log(
    `${label.padEnd(44)} p50 ${pct(s, 0.5).toFixed(3)} ms   p99 ${
      pct(s, 0.99).toFixed(3)
    } ms   (n=${s.length})`,
  );
}

async function ceiling(): Promise<number[]> {
  const out: number[] = [];
  async function* gen() {
    yield 1;
    await Promise.resolve();
    yield 2;
  }
  for (let i = 0; i < SEQUENTIAL; i++) {
    const t = performance.now();
    for await (const _ of gen()) { /* consume */ }
    out.push(performance.now() - t);
  }
  return out;
}

function startWorkers(s: SimpleScheduler, n: number): FakeWorker[] {
  return Array.from(
    { length: n },
    (_, i) =>
      new FakeWorker(s, { workerId: `fake-${i}`, maxInflightTasks: 8, autoRespond: () => exitResponse(0) }),
  );
}

async function schedulerOnly(): Promise<number[]> {
  const s = new SimpleScheduler({});
  startWorkers(s, 3);
  const out: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const t = performance.now();
    const handle = await s.addAction(actionRequest(`seq-${i}`));
    for await (const st of handle) if (st.done) break;
    out.push(performance.now() - t);
  }
  await s.close();
  return out;
}

async function put<D extends DescMessage>(
  cas: MemoryStore,
  schema: D,
  msg: MessageShape<D>,
): Promise<Digest> {
  const bytes = toBinary(schema, msg);
  const d = digestOf(bytes);
  await putBytes(cas, d, bytes);
  return d;
}

async function viaExecutionService(): Promise<number[]> {
  const cas = new MemoryStore();
  const s = new SimpleScheduler({});
  startWorkers(s, 3);
  const client = serviceClient(
    Execution,
    createExecutionService({ instances: new Map([["main", { casStore: cas, scheduler: s }]]) }),
  );
  const pd = (d: Digest) => ({ hash: d.hash, sizeBytes: BigInt(d.size) });
  // A small input tree: 2 directories, 10 files.
  const files = [];
  for (let f = 0; f < 10; f++) {
    const bytes = new TextEncoder().encode(`file ${f}`);
    const d = digestOf(bytes);
    await putBytes(cas, d, bytes);
    files.push({ name: `f${f}.c`, digest: pd(d) });
  }
  const sub = await put(cas, DirectorySchema, create(DirectorySchema, { files }));
  const root = await put(
    cas,
    DirectorySchema,
    create(DirectorySchema, { directories: [{ name: "src", digest: pd(sub) }] }),
  );
  const digests: Digest[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const cmd = await put(
      cas,
      CommandSchema,
      create(CommandSchema, { arguments: ["cc", `${i}`], outputFiles: ["a.o"] }),
    );
    digests.push(
      await put(
        cas,
        ActionSchema,
        create(ActionSchema, { commandDigest: pd(cmd), inputRootDigest: pd(root) }),
      ),
    );
  }
  const out: number[] = [];
  for (const d of digests) {
    const t = performance.now();
    for await (const op of client.execute({ instanceName: "main", actionDigest: pd(d) })) if (op.done) break;
    out.push(performance.now() - t);
  }
  await s.close();
  return out;
}

async function throughput(): Promise<number> {
  const s = new SimpleScheduler({});
  startWorkers(s, 3);
  const t = performance.now();
  const handles = await Promise.all(
    Array.from({ length: THROUGHPUT }, (_, i) => s.addAction(actionRequest(`tp-${i}`))),
  );
  await Promise.all(handles.map(async (h) => {
    for await (const st of h) if (st.done) break;
  }));
  const seconds = (performance.now() - t) / 1000;
  await s.close();
  return THROUGHPUT / seconds;
}

// Warm up the JIT once.
await schedulerOnly();
report("ceiling: bare async generator round trip", await ceiling());
report("scheduler: addAction → result", await schedulerOnly());
report("Execution service: Execute → done Operation", await viaExecutionService());
console.log(
  `${"throughput: 1,000 actions, 3 fake workers".padEnd(44)} ${(await throughput()).toFixed(0)} actions/s`,
);
