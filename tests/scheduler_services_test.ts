// Execution, Operations and WorkerApi services over connect's in-memory transport, with a real scheduler and
// workers speaking the worker API.
import assert from "node:assert/strict";
import {
  create,
  type DescMessage,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import {
  ActionResultSchema,
  ActionSchema,
  CommandSchema,
  DirectorySchema,
  ExecuteOperationMetadataSchema,
  ExecuteResponseSchema,
  Execution,
  ExecutionStage_Value,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  type Disconnect,
  type KillExecution,
  type SchedulerMessage,
  type StartExecution,
  type Welcome,
  WorkerApi,
  type WorkerMessage,
  WorkerMessageSchema,
} from "../src/gen/cairn/worker/v1/worker_api_pb.ts";
import { type Operation, Operations } from "../src/gen/google/longrunning/operations_pb.ts";
import { PreconditionFailureSchema } from "../src/gen/google/rpc/error_details_pb.ts";
import { type Digest, digestOf } from "../src/digest/digest.ts";
import { SimpleScheduler } from "../src/scheduler/simple_scheduler.ts";
import type { SimpleSpec } from "../src/scheduler/scheduler_spec.ts";
import { createExecutionService } from "../src/service/execution_service.ts";
import { createOperationsService } from "../src/service/operations_service.ts";
import { rejectsWithCode, serviceClient } from "./fixtures/service_testing.ts";
import { createWorkerApiService } from "../src/service/worker_api_service.ts";
import { acKey, putBytes } from "../src/store/helpers.ts";
import { MemoryStore } from "../src/store/memory_store.ts";
import { Code } from "../src/util/error.ts";

const enc = new TextEncoder();
const S = ExecutionStage_Value;

type WorkerMsg = NonNullable<MessageInitShape<typeof WorkerMessageSchema>["msg"]>;
interface Msgs {
  welcome: Welcome;
  startExecution: StartExecution;
  killExecution: KillExecution;
  disconnect: Disconnect;
}

function pd(d: Digest) {
  return { hash: d.hash, sizeBytes: BigInt(d.size) };
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

interface ActionOpts {
  seed?: string;
  outputFiles?: string[];
  skipFile?: boolean;
  skipCommand?: boolean;
  platform?: { name: string; value: string }[];
  doNotCache?: boolean;
}

async function storeAction(cas: MemoryStore, o: ActionOpts = {}): Promise<{ digest: Digest; file: Digest }> {
  const content = enc.encode(`input of ${o.seed ?? "x"}`);
  const file = digestOf(content);
  if (!o.skipFile) await putBytes(cas, file, content);
  const sub = await put(
    cas,
    DirectorySchema,
    create(DirectorySchema, { files: [{ name: "in.txt", digest: pd(file) }] }),
  );
  const root = await put(
    cas,
    DirectorySchema,
    create(DirectorySchema, { directories: [{ name: "src", digest: pd(sub) }] }),
  );
  const command = create(CommandSchema, {
    arguments: ["/bin/true", o.seed ?? "x"],
    outputFiles: o.outputFiles ?? ["out/a.o"],
    platform: { properties: o.platform ?? [] },
  });
  const commandBytes = toBinary(CommandSchema, command);
  const commandDigest = digestOf(commandBytes);
  if (!o.skipCommand) await putBytes(cas, commandDigest, commandBytes);
  const digest = await put(
    cas,
    ActionSchema,
    create(ActionSchema, {
      commandDigest: pd(commandDigest),
      inputRootDigest: pd(root),
      doNotCache: o.doNotCache ?? false,
    }),
  );
  return { digest, file };
}

/** A worker speaking WorkerApi.Connect through the in-memory transport. */
class StreamWorker {
  readonly #queue: WorkerMessage[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  readonly received: SchedulerMessage[] = [];
  /** Answer the scheduler's KeepAlive pings (a live worker does). */
  answerPings = true;
  readonly #responses: AsyncIterator<SchedulerMessage>;
  readonly #abort = new AbortController();

  constructor(client: ReturnType<typeof serviceClient<typeof WorkerApi>>, hello: WorkerMsg) {
    this.send(hello);
    this.#responses = client.connect(this.#requests(), { signal: this.#abort.signal })
      [Symbol.asyncIterator]();
  }

  async *#requests(): AsyncGenerator<WorkerMessage> {
    for (;;) {
      if (this.#queue.length > 0) {
        yield this.#queue.shift()!;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((r) => this.#wake = r);
    }
  }

  send(msg: WorkerMsg): void {
    this.#queue.push(create(WorkerMessageSchema, { msg } as MessageInitShape<typeof WorkerMessageSchema>));
    this.#wake?.();
  }

  /** The next scheduler message that is not a KeepAlive. */
  async next(): Promise<SchedulerMessage> {
    for (;;) {
      const r = await this.#responses.next();
      if (r.done) throw new Error("stream ended");
      this.received.push(r.value);
      if (r.value.msg.case !== "keepAlive") return r.value;
      if (this.answerPings) this.send({ case: "keepAlive", value: {} });
    }
  }

  async nextOf<K extends keyof Msgs>(kind: K): Promise<Msgs[K]> {
    const m = await this.next();
    assert.equal(m.msg.case, kind);
    return m.msg.value as Msgs[K];
  }

  respond(operationId: string, exitCode: number): void {
    this.send({
      case: "executionUpdate",
      value: {
        operationId,
        update: {
          case: "response",
          value: create(ExecuteResponseSchema, { result: { exitCode } }),
        },
      },
    });
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  abort(): void {
    this.#abort.abort();
  }
}

function hello(properties: { name: string; value: string }[] = [], workerId = ""): WorkerMsg {
  return { case: "hello", value: { workerId, properties, maxInflightTasks: 1 } };
}

function setup(spec: SimpleSpec = {}, acStore?: MemoryStore) {
  const cas = new MemoryStore();
  const scheduler = new SimpleScheduler(spec);
  const logs: string[] = [];
  const instances = new Map([["main", { casStore: cas, scheduler, ...(acStore ? { acStore } : {}) }]]);
  const execution = serviceClient(Execution, createExecutionService({ instances }));
  const operations = serviceClient(Operations, createOperationsService({ instances }));
  const workerApi = serviceClient(
    WorkerApi,
    createWorkerApiService({ scheduler, keepaliveIntervalS: 0.05, log: (m) => logs.push(m) }),
  );
  return { cas, scheduler, execution, operations, workerApi, logs };
}

function stage(op: Operation): ExecutionStage_Value | undefined {
  return op.metadata ? anyUnpack(op.metadata, ExecuteOperationMetadataSchema)?.stage : undefined;
}

function response(op: Operation) {
  assert.equal(op.result.case, "response");
  return anyUnpack(op.result.value!, ExecuteResponseSchema)!;
}

Deno.test("Execute streams queued, executing and a done Operation carrying the worker's result", async () => {
  const { cas, scheduler, execution, workerApi } = setup();
  try {
    const worker = new StreamWorker(workerApi, hello([], "w1"));
    const welcome = await worker.nextOf("welcome");
    // The proposed id is only a label: the scheduler assigns the id.
    assert.match(welcome.workerId, /^w1-[0-9a-f-]{36}$/);
    const { digest } = await storeAction(cas);
    const ops: Operation[] = [];
    const run = (async () => {
      for await (const op of execution.execute({ instanceName: "main", actionDigest: pd(digest) })) {
        ops.push(op);
      }
    })();
    const start = await worker.nextOf("startExecution");
    assert.equal(start.actionDigest?.hash, digest.hash);
    assert.ok(start.uploadToActionCache);
    assert.match(start.operationId, /^main\/operations\//);
    worker.respond(start.operationId, 0);
    await run;
    const last = ops.at(-1)!;
    assert.ok(last.done);
    assert.equal(last.name, start.operationId);
    const stages = ops.map(stage);
    assert.deepEqual(stages, [...stages].sort(), "stages only move forward");
    assert.ok(stages[0] === S.QUEUED || stages[0] === S.EXECUTING);
    assert.equal(stages.at(-2), S.EXECUTING);
    assert.equal(stage(last), S.COMPLETED);
    assert.equal(response(last).result?.exitCode, 0);
    assert.equal(anyUnpack(last.metadata!, ExecuteOperationMetadataSchema)?.actionDigest?.hash, digest.hash);
    worker.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("WaitExecution re-attaches after the Execute stream went away", async () => {
  const { cas, scheduler, execution, workerApi } = setup();
  try {
    const worker = new StreamWorker(workerApi, hello());
    await worker.nextOf("welcome");
    const { digest } = await storeAction(cas);
    const abort = new AbortController();
    const stream = execution.execute({ instanceName: "main", actionDigest: pd(digest) }, {
      signal: abort.signal,
    });
    const it = stream[Symbol.asyncIterator]();
    const first = (await it.next()).value as Operation;
    abort.abort();
    await it.return?.().catch(() => {});
    const start = await worker.nextOf("startExecution");
    // Re-attach (the first message is the operation's current state), then let the worker finish.
    const ops = execution.waitExecution({ name: first.name })[Symbol.asyncIterator]();
    const attached = await ops.next();
    assert.equal((attached.value as Operation | undefined)?.name, first.name);
    assert.equal(
      (attached.value as Operation).done,
      false,
      "the operation is still running when re-attached",
    );
    worker.respond(start.operationId, 4);
    let last = attached.value as Operation | undefined;
    for (let r = await ops.next(); !r.done; r = await ops.next()) last = r.value;
    assert.equal(last?.name, first.name);
    assert.equal(response(last!).result?.exitCode, 4);
    await rejectsWithCode(
      (async () => {
        for await (const _ of execution.waitExecution({ name: "main/operations/nope" })) { /* drain */ }
      })(),
      Code.NotFound,
    );
    worker.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("CancelOperation kills the action on its worker and completes the operation CANCELLED", async () => {
  const { cas, scheduler, execution, operations, workerApi } = setup();
  try {
    const worker = new StreamWorker(workerApi, hello());
    await worker.nextOf("welcome");
    const { digest } = await storeAction(cas);
    const ops: Operation[] = [];
    const run = (async () => {
      for await (const op of execution.execute({ instanceName: "main", actionDigest: pd(digest) })) {
        ops.push(op);
      }
    })();
    const start = await worker.nextOf("startExecution");
    await operations.cancelOperation({ name: start.operationId });
    const kill = await worker.nextOf("killExecution");
    assert.equal(kill.operationId, start.operationId);
    await run;
    assert.equal(response(ops.at(-1)!).status?.code, Code.Cancelled);
    const got = await operations.getOperation({ name: start.operationId });
    assert.ok(got.done);
    assert.equal(response(got).status?.code, Code.Cancelled);
    // The worker acknowledges the kill; the late report is accepted as the slot's release.
    worker.send({
      case: "executionUpdate",
      value: {
        operationId: start.operationId,
        update: { case: "internalError", value: { code: 1, message: "killed" } },
      },
    });
    await rejectsWithCode(operations.cancelOperation({ name: "main/operations/unknown" }), Code.NotFound);
    worker.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("Execute with missing inputs is FAILED_PRECONDITION listing MISSING violations", async () => {
  const { cas, scheduler, execution } = setup();
  try {
    const { digest, file } = await storeAction(cas, { seed: "m", skipFile: true, skipCommand: true });
    try {
      for await (
        const _ of execution.execute({ instanceName: "main", actionDigest: pd(digest) })
      ) { /* drain */ }
      assert.fail("Execute should fail");
    } catch (err) {
      const e = ConnectError.from(err);
      assert.equal(e.code, Code.FailedPrecondition);
      const violations = e.findDetails(PreconditionFailureSchema).flatMap((d) => d.violations);
      assert.ok(violations.length === 2);
      assert.ok(violations.every((v) => v.type === "MISSING"));
      assert.ok(violations.some((v) => v.subject === `blobs/${file.hash}/${file.size}`));
    }
    const absent = digestOf(enc.encode("no such action"));
    const msg = await rejectsWithCode(
      (async () => {
        for await (
          const _ of execution.execute({ instanceName: "main", actionDigest: pd(absent) })
        ) { /* drain */ }
      })(),
      Code.FailedPrecondition,
    );
    assert.match(msg, /missing/);
  } finally {
    await scheduler.close();
  }
});

Deno.test("Execute with an output path escaping the input root is INVALID_ARGUMENT", async () => {
  const { cas, scheduler, execution } = setup();
  try {
    for (const bad of ["../x", "/abs/x", "a/../../x"]) {
      const { digest } = await storeAction(cas, { seed: bad, outputFiles: [bad] });
      const msg = await rejectsWithCode(
        (async () => {
          for await (
            const _ of execution.execute({ instanceName: "main", actionDigest: pd(digest) })
          ) { /* drain */ }
        })(),
        Code.InvalidArgument,
      );
      assert.match(msg, /output_files/);
    }
  } finally {
    await scheduler.close();
  }
});

Deno.test("Execute answers from the instance's action cache without running, unless skip_cache_lookup", async () => {
  const ac = new MemoryStore();
  const { cas, scheduler, execution, workerApi } = setup({}, ac);
  try {
    const { digest } = await storeAction(cas, { seed: "cached" });
    const result = create(ActionResultSchema, { exitCode: 0, stdoutRaw: enc.encode("hi") });
    await putBytes(ac, acKey(digest), toBinary(ActionResultSchema, result));
    const ops: Operation[] = [];
    for await (const op of execution.execute({ instanceName: "main", actionDigest: pd(digest) })) {
      ops.push(op);
    }
    assert.equal(ops.length, 1);
    assert.equal(response(ops[0]!).cachedResult, true);
    assert.equal(new TextDecoder().decode(response(ops[0]!).result?.stdoutRaw), "hi");

    const worker = new StreamWorker(workerApi, hello());
    await worker.nextOf("welcome");
    const run = (async () => {
      const out: Operation[] = [];
      for await (
        const op of execution.execute({
          instanceName: "main",
          actionDigest: pd(digest),
          skipCacheLookup: true,
        })
      ) {
        out.push(op);
      }
      return out;
    })();
    const start = await worker.nextOf("startExecution");
    assert.ok(start.skipCacheLookup);
    worker.respond(start.operationId, 0);
    assert.equal(response((await run).at(-1)!).cachedResult, false);
    worker.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("a worker with a property the scheduler does not support is refused with INVALID_ARGUMENT", async () => {
  const { scheduler, workerApi, logs } = setup({
    supported_platform_properties: { cpu_count: "minimum" },
  });
  try {
    const bogus = new StreamWorker(workerApi, hello([{ name: "gpu_model", value: "x" }]));
    const msg = await rejectsWithCode(bogus.next(), Code.InvalidArgument);
    assert.match(msg, /"gpu_model"/);
    const bad = new StreamWorker(workerApi, hello([{ name: "cpu_count", value: "four" }]));
    await rejectsWithCode(bad.next(), Code.InvalidArgument);
    assert.equal(logs.filter((l) => /Refused worker/.test(l)).length, 2);
    bogus.close();
    bad.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("a result for an action the worker was not given is logged and ignored", async () => {
  const { cas, scheduler, execution, workerApi, logs } = setup();
  try {
    const worker = new StreamWorker(workerApi, hello());
    await worker.nextOf("welcome");
    const { digest } = await storeAction(cas);
    const run = (async () => {
      let last: Operation | undefined;
      for await (const op of execution.execute({ instanceName: "main", actionDigest: pd(digest) })) last = op;
      return last;
    })();
    const start = await worker.nextOf("startExecution");
    worker.respond("main/operations/not-mine", 1);
    worker.respond(start.operationId, 0);
    assert.equal(response((await run)!).result?.exitCode, 0);
    assert.ok(logs.some((l) => /not-mine/.test(l) && /not running/.test(l)));
    worker.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("when a worker's stream ends its action is requeued to another worker", async () => {
  const { cas, scheduler, execution, workerApi } = setup();
  try {
    const first = new StreamWorker(workerApi, hello([], "first"));
    await first.nextOf("welcome");
    const { digest } = await storeAction(cas);
    const run = (async () => {
      let last: Operation | undefined;
      for await (const op of execution.execute({ instanceName: "main", actionDigest: pd(digest) })) last = op;
      return last;
    })();
    const start = await first.nextOf("startExecution");
    first.close(); // the worker ends its stream
    const second = new StreamWorker(workerApi, hello([], "second"));
    await second.nextOf("welcome");
    const again = await second.nextOf("startExecution");
    assert.equal(again.operationId, start.operationId);
    second.respond(again.operationId, 0);
    assert.equal(response((await run)!).result?.exitCode, 0);
    second.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("a worker that sends no keep-alive is dropped with Disconnect", async () => {
  const { scheduler, workerApi } = setup({ worker_timeout_s: 0.1 });
  try {
    const worker = new StreamWorker(workerApi, hello());
    worker.answerPings = false;
    await worker.nextOf("welcome");
    const bye = await worker.nextOf("disconnect");
    assert.match(bye.reason, /keep-alive/);
    worker.close();
  } finally {
    await scheduler.close();
  }
});

Deno.test("ListOperations, GetOperation and DeleteOperation see retained operations", async () => {
  const { cas, scheduler, execution, operations, workerApi } = setup();
  try {
    const worker = new StreamWorker(workerApi, hello());
    await worker.nextOf("welcome");
    const { digest } = await storeAction(cas);
    const run = (async () => {
      for await (
        const _ of execution.execute({ instanceName: "main", actionDigest: pd(digest) })
      ) { /* drain */ }
    })();
    const start = await worker.nextOf("startExecution");
    const listed = await operations.listOperations({ name: "main/operations" });
    assert.deepEqual(listed.operations.map((o) => o.name), [start.operationId]);
    assert.equal((await operations.listOperations({ name: "other/operations" })).operations.length, 0);
    assert.equal((await operations.listOperations({ name: "", filter: "done=true" })).operations.length, 0);
    const waited = await operations.waitOperation({
      name: start.operationId,
      timeout: { seconds: 0n, nanos: 20e6 },
    });
    assert.equal(waited.done, false);
    worker.respond(start.operationId, 0);
    await run;
    const got = await operations.getOperation({ name: start.operationId });
    assert.ok(got.done);
    await operations.deleteOperation({ name: start.operationId });
    await rejectsWithCode(operations.getOperation({ name: start.operationId }), Code.NotFound);
    worker.close();
  } finally {
    await scheduler.close();
  }
});
