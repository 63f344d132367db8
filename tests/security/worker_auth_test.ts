/**
 * Worker authentication end to end through the real `main.ts` on loopback: a fake worker (grpc-js, the
 * WorkerApi bidi stream) without the worker credential is refused UNAUTHENTICATED and receives nothing, not
 * even a queued action; worker ids are assigned by the server, so registering with another worker's id does
 * not disconnect it; a result reported for an operation the worker was not given is ignored; a worker API
 * nobody could authenticate to refuses to start; and the all-in-one start hands its own worker process a
 * credential that passes both the worker API and the client authentication of its server.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import grpc from "@grpc/grpc-js";
import { ActionCache } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type SchedulerMessage, WorkerApi } from "../../src/gen/cairn/worker/v1/worker_api_pb.ts";
import { type CairnProcess, startCairnProcess } from "../fixtures/cairn_process.ts";
import { buildAction, ExecClient, freePort, RUN_PERMISSIONS } from "../fixtures/exec_fixtures.ts";
import { grpcJsClient } from "../fixtures/transport_fixtures.ts";

const UNAUTHENTICATED = 16;
const WorkerClient = grpcJsClient(WorkerApi);
const AcClient = grpcJsClient(ActionCache);
const WORKER_TOKEN = `worker-token-${crypto.randomUUID()}`;

/** A worker speaking WorkerApi.Connect through grpc-js; collects what the scheduler sends. */
class FakeWorker {
  readonly messages: SchedulerMessage[] = [];
  readonly ended: Promise<number>;
  // deno-lint-ignore no-explicit-any
  readonly #client: any;
  // deno-lint-ignore no-explicit-any
  readonly #stream: any;
  #read = 0;
  #wake: (() => void) | undefined;
  #done = false;

  constructor(target: string, token: string | undefined, workerId: string) {
    this.#client = new WorkerClient(target, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    if (token !== undefined) md.set("authorization", `Bearer ${token}`);
    this.#stream = this.#client.connect(md);
    this.ended = new Promise((resolve) => {
      this.#stream.on("data", (m: SchedulerMessage) => {
        this.messages.push(m);
        this.#wake?.();
      });
      this.#stream.on("error", (err: grpc.ServiceError) => {
        this.#done = true;
        this.#wake?.();
        resolve(err.code);
      });
      this.#stream.on("end", () => {
        this.#done = true;
        this.#wake?.();
        resolve(0);
      });
    });
    this.send({ msg: { case: "hello", value: { workerId, properties: [], maxInflightTasks: 1 } } });
  }

  send(message: unknown): void {
    this.#stream.write(message);
  }

  /** The next message not read yet (waits for it); throws when the stream ends first. */
  async next(): Promise<SchedulerMessage> {
    for (;;) {
      if (this.#read < this.messages.length) return this.messages[this.#read++]!;
      if (this.#done) throw new Error("the worker stream ended");
      await new Promise<void>((r) => this.#wake = r);
      this.#wake = undefined;
    }
  }

  /** The next message of a kind, skipping keep-alives. */
  async nextOf(kind: SchedulerMessage["msg"]["case"]): Promise<SchedulerMessage["msg"]> {
    for (;;) {
      const m = await this.next();
      if (m.msg.case === kind) return m.msg;
      assert.equal(m.msg.case, "keepAlive", `expected ${kind}, got ${m.msg.case}`);
    }
  }

  close(): void {
    this.#stream.cancel?.();
    this.#client.close();
  }
}

/** Waits (bounded) until the process has logged a line matching `re`. */
async function waitForLog(cairn: CairnProcess, re: RegExp, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!re.test(cairn.logs())) {
    if (Date.now() > deadline) assert.fail(`no log line matching ${re}:\n${cairn.logs()}`);
    await new Promise<void>((r) => setTimeout(r, 50));
  }
}

function schedulerConfig(workerApi: Record<string, unknown>): Record<string, unknown> {
  return {
    stores: [
      { name: "CAS", verify: { verify_size: true, verify_hash: true, backend: { memory: {} } } },
      { name: "AC", memory: {} },
    ],
    schedulers: [{ name: "MAIN", simple: {} }],
    servers: [
      {
        listener: { http: { socket_address: "127.0.0.1:0" } },
        services: {
          cas: [{ cas_store: "CAS" }],
          ac: [{ ac_store: "AC" }],
          bytestream: [{ cas_store: "CAS" }],
          execution: [{ cas_store: "CAS", scheduler: "MAIN" }],
          capabilities: [],
        },
      },
      { listener: { http: { socket_address: "127.0.0.1:0" } }, services: { worker_api: workerApi } },
    ],
  };
}

Deno.test({
  name: "worker API: only workers with the credential get work; ids are the server's; results bound to tasks",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const cairn = await startCairnProcess({
      config: schedulerConfig({ scheduler: "MAIN" }),
      env: { CAIRN_WORKER_TOKEN: WORKER_TOKEN },
    });
    const workers: FakeWorker[] = [];
    const worker = (token: string | undefined, id: string) => {
      const w = new FakeWorker(`127.0.0.1:${cairn.servers[1]!.port}`, token, id);
      workers.push(w);
      return w;
    };
    try {
      const client = new ExecClient(cairn.url);
      const action = buildAction({ argv: ["/bin/true"], salt: crypto.randomUUID() });
      await client.upload(action.blobs);
      const run = client.execute(action.actionDigest); // queued: no worker yet

      await t.step("no credential or a wrong one: UNAUTHENTICATED before any message", async () => {
        const none = worker(undefined, "intruder");
        assert.equal(await none.ended, UNAUTHENTICATED);
        const wrong = worker("not-the-worker-token", "intruder");
        assert.equal(await wrong.ended, UNAUTHENTICATED);
        const basic = new FakeWorker(`127.0.0.1:${cairn.servers[1]!.port}`, undefined, "x");
        workers.push(basic);
        assert.equal(await basic.ended, UNAUTHENTICATED);
        assert.deepEqual([none.messages, wrong.messages, basic.messages], [[], [], []]);
      });

      const a = worker(WORKER_TOKEN, "victim");
      let aId = "";
      let operationId = "";
      await t.step("with the token: a server-assigned id, then the queued action", async () => {
        const welcome = await a.nextOf("welcome");
        assert.equal(welcome.case, "welcome");
        aId = welcome.value.workerId;
        assert.match(aId, /^victim-[0-9a-f-]{36}$/);
        const start = await a.nextOf("startExecution");
        assert.equal(start.case, "startExecution");
        operationId = start.value.operationId;
        assert.equal(start.value.actionDigest?.hash, action.actionDigest.hash);
      });

      const b = worker(WORKER_TOKEN, aId);
      await t.step("registering with an existing worker's id does not displace it", async () => {
        const welcome = await b.nextOf("welcome");
        assert.equal(welcome.case, "welcome");
        assert.notEqual(welcome.value.workerId, aId);
        // The first worker keeps its session: its next message is a keep-alive, not a Disconnect.
        const next = await a.next();
        assert.equal(next.msg.case, "keepAlive");
      });

      await t.step("a result for an operation the worker was not given is ignored", async () => {
        const forged = (exitCode: number) => ({
          msg: {
            case: "executionUpdate",
            value: {
              operationId,
              actionDigest: action.actionDigest,
              update: { case: "response", value: { result: { exitCode } } },
            },
          },
        });
        b.send(forged(66));
        await waitForLog(cairn, /Rejected update from worker "[^"]+": .*not running/);
        a.send(forged(0));
        const done = await run;
        assert.equal(done.response.result?.exitCode, 0);
      });
    } finally {
      for (const w of workers) w.close();
      await cairn.stop();
    }
  },
});

Deno.test("worker API: refuses to start when no worker could authenticate", async () => {
  await assert.rejects(
    startCairnProcess({ config: schedulerConfig({ scheduler: "MAIN" }), env: { CAIRN_WORKER_TOKEN: "" } }),
    /workers could not authenticate\. Set services\.worker_api\.worker_token/,
  );
  await assert.rejects(
    startCairnProcess({ config: schedulerConfig({ scheduler: "MAIN", worker_token: "short" }) }),
    /worker token must be at least 16 characters/,
  );
});

Deno.test({
  name: "all-in-one: the worker process gets its credential without any setting, also through client auth",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const token = `ci-${crypto.randomUUID()}`;
    const workerApiPort = freePort();
    const config = {
      stores: [
        { name: "CAS", verify: { verify_size: true, verify_hash: true, backend: { memory: {} } } },
        { name: "AC", memory: {} },
        {
          name: "WORKER_CAS",
          fast_slow: {
            fast: {
              filesystem: {
                content_path: "${CAIRN_DATA_DIR}/worker/cas",
                temp_path: "${CAIRN_DATA_DIR}/worker/tmp",
              },
            },
            slow: { ref_store: { name: "CAS" } },
          },
        },
      ],
      schedulers: [{ name: "MAIN", simple: {} }],
      workers: [{
        local: {
          worker_api_endpoint: { uri: `grpc://127.0.0.1:${workerApiPort}` },
          cas_fast_slow_store: "WORKER_CAS",
          upload_action_result: { ac_store: "AC" },
          work_directory: "${CAIRN_DATA_DIR}/work",
        },
      }],
      servers: [
        {
          listener: { http: { socket_address: "127.0.0.1:0" } },
          services: {
            cas: [{ cas_store: "CAS" }],
            ac: [{ ac_store: "AC" }],
            bytestream: [{ cas_store: "CAS" }],
            execution: [{ cas_store: "CAS", scheduler: "MAIN" }],
            capabilities: [],
          },
          auth: {
            anonymous: "none",
            users: [{
              name: "ci",
              token_sha256: createHash("sha256").update(token).digest("hex"),
              permissions: { "*": ["read", "write_cas", "write_ac", "execute"] },
            }],
          },
        },
        {
          listener: { http: { socket_address: `127.0.0.1:${workerApiPort}` } },
          services: { worker_api: { scheduler: "MAIN" } },
        },
      ],
    };
    const cairn = await startCairnProcess({
      config,
      permissions: RUN_PERMISSIONS,
      env: { CAIRN_WORKER_TOKEN: "" },
    });
    const intruder = new FakeWorker(`127.0.0.1:${workerApiPort}`, undefined, "intruder");
    const ac = new AcClient(`127.0.0.1:${cairn.port}`, grpc.credentials.createInsecure());
    try {
      await waitForLog(cairn, /\[worker 0\] Connected to .* as worker-/);
      assert.equal(await intruder.ended, UNAUTHENTICATED);
      const client = new ExecClient(cairn.url, { token });
      const action = buildAction({ argv: ["/bin/echo", "hi"], salt: crypto.randomUUID() });
      await client.upload(action.blobs);
      const run = await client.execute(action.actionDigest);
      assert.equal(run.response.result?.exitCode, 0, run.response.status?.message ?? "");
      // The worker uploaded the result to the action cache through the guarded server with its credential.
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${token}`);
      const cached = await new Promise<{ exitCode: number }>((resolve, reject) =>
        ac.getActionResult(
          { actionDigest: action.actionDigest },
          md,
          (err: Error | null, r: { exitCode: number }) => err ? reject(err) : resolve(r),
        )
      );
      assert.equal(cached.exitCode, 0);
      // Clients without a credential cannot execute.
      await assert.rejects(
        new ExecClient(cairn.url).execute(action.actionDigest),
        /Anonymous clients may not execute/,
      );
    } finally {
      intruder.close();
      ac.close();
      await cairn.stop();
    }
  },
});
