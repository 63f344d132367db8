/**
 * OpenTelemetry end to end: the real all-in-one `main.ts` started with seed 000's `OTEL_*` variables (and no
 * `OTEL_DENO`) relaunches itself with Deno's telemetry on and exports to an OTLP receiver in this test. One
 * remote action gives one trace holding the server's Execute span, the scheduler's queue and execution spans
 * and the worker process's input fetch, execution and output upload; the seed's `grpc` protocol with `zstd`
 * compression is accepted too.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/otel_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Capabilities } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  type AllInOne,
  ExecClient,
  type ExecutionRun,
  shellAction,
  startAllInOne,
} from "./fixtures/exec_fixtures.ts";

type AnyValue = {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
};
interface KeyValue {
  key: string;
  value: AnyValue;
}

/** One exported span with its resource. */
interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly attributes: Record<string, string | number | boolean | undefined>;
  readonly resource: Record<string, string | number | boolean | undefined>;
  readonly statusCode: number;
}

function flatten(list: KeyValue[] | undefined): Record<string, string | number | boolean | undefined> {
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    out[kv.key] = v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ??
      v.boolValue ?? v.doubleValue;
  }
  return out;
}

/** An OTLP/HTTP JSON receiver on a loopback port: collects spans, resolves waiters on each batch. */
class OtlpJsonReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  #wake: (() => void)[] = [];

  constructor() {
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const body = await req.text();
      if (new URL(req.url).pathname === "/v1/traces") {
        // deno-lint-ignore no-explicit-any
        const doc = JSON.parse(body) as { resourceSpans?: any[] };
        for (const rs of doc.resourceSpans ?? []) {
          const resource = flatten(rs.resource?.attributes);
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              this.spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId ?? "",
                name: s.name,
                attributes: flatten(s.attributes),
                resource,
                statusCode: s.status?.code ?? 0,
              });
            }
          }
        }
        for (const w of this.#wake.splice(0)) w();
      }
      return Response.json({});
    });
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Waits (up to `ms`) until `found` returns a value for the spans received so far. */
  async waitFor<T>(
    found: (spans: readonly ReceivedSpan[]) => T | undefined,
    ms: number,
    context: () => string = () => "",
  ): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = found(this.spans);
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(
          `spans did not arrive within ${ms} ms; got: ${
            this.spans.map((s) => s.name).join(", ")
          }\n${context()}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}

/** The span names one remote action's trace must hold. */
const ACTION_TRACE = [
  "build.bazel.remote.execution.v2.Execution/Execute",
  "scheduler.action",
  "scheduler.queued",
  "scheduler.executing",
  "worker.action",
  "worker.fetch_inputs",
  "worker.execute",
  "worker.upload_outputs",
];

/** Seed 000's variables, pointed at `endpoint`. */
function seedEnv(endpoint: string, protocol: string): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
    OTEL_SERVICE_NAME: "nativelink",
    OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=production,service.version=v0.5.0",
    OTEL_EXPORTER_OTLP_COMPRESSION: "zstd",
    // Export batches quickly (Deno honours the batch span processor's delay).
    OTEL_BSP_SCHEDULE_DELAY: "100",
  };
}

Deno.test("OTEL_* variables: one trace spans the Execute RPC, the scheduler and the worker process", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn_otel_" });
  const receiver = new OtlpJsonReceiver();
  let cairn: AllInOne | undefined;
  try {
    cairn = await startAllInOne({ dataDir: `${dir}/data`, env: seedEnv(receiver.endpoint, "http/json") });
    const client = new ExecClient(cairn.url);
    const action = shellAction("echo traced > out.txt", {
      inputs: { "in.txt": { content: "input\n" } },
      outputPaths: ["out.txt"],
    });
    await client.upload(action.blobs);
    const run: ExecutionRun = await client.execute(action.actionDigest);
    assert.equal(run.response.status?.code ?? 0, 0, run.response.status?.message ?? "");
    assert.equal(run.response.result?.exitCode, 0);
    const digest = `${action.actionDigest.hash}/${action.actionDigest.sizeBytes}`;

    const trace = await receiver.waitFor(
      (spans) => {
        const execute = spans.find((s) =>
          s.name === ACTION_TRACE[0] && s.attributes["cairn.digest"] === digest
        );
        if (execute === undefined) return undefined;
        const same = spans.filter((s) => s.traceId === execute.traceId);
        return ACTION_TRACE.every((n) => same.some((s) => s.name === n)) ? same : undefined;
      },
      30_000,
      () => cairn?.process.log ?? "",
    );
    const span = (name: string) => trace.find((s) => s.name === name)!;

    // The server span of the RPC: method, instance, digest, status.
    const execute = span(ACTION_TRACE[0]!);
    assert.equal(execute.attributes["rpc.system"], "grpc");
    assert.equal(execute.attributes["rpc.service"], "build.bazel.remote.execution.v2.Execution");
    assert.equal(execute.attributes["rpc.method"], "Execute");
    assert.equal(execute.attributes["cairn.instance_name"], "");
    assert.equal(execute.attributes["rpc.grpc.status_code"], 0);
    assert.equal(execute.statusCode, 1, "Execute span status OK");

    // Scheduler: queued → executing, under the Execute span.
    const action_ = span("scheduler.action");
    assert.equal(action_.parentSpanId, execute.spanId);
    assert.equal(span("scheduler.queued").parentSpanId, action_.spanId);
    const executing = span("scheduler.executing");
    assert.equal(executing.parentSpanId, action_.spanId);
    assert.equal(executing.attributes["cairn.digest"], digest);
    assert.equal(typeof executing.attributes["cairn.worker_id"], "string");

    // The worker process continues the trace from StartExecution's traceparent.
    const worker = span("worker.action");
    assert.equal(worker.parentSpanId, executing.spanId);
    assert.equal(worker.attributes["cairn.digest"], digest);
    for (const phase of ["worker.fetch_inputs", "worker.execute", "worker.upload_outputs"]) {
      assert.equal(span(phase).parentSpanId, worker.spanId, `${phase} parent`);
    }
    assert.equal(span("worker.execute").attributes["process.exit.code"], 0);

    // Both processes name the service from OTEL_SERVICE_NAME and carry OTEL_RESOURCE_ATTRIBUTES.
    for (const s of trace) {
      assert.equal(s.resource["service.name"], "nativelink", `${s.name}: service.name`);
      assert.equal(s.resource["deployment.environment"], "production", `${s.name}: resource attributes`);
    }

    // Store spans at the service boundary: the upload wrote the action's blobs through the CAS store.
    const write = await receiver.waitFor(
      (spans) =>
        spans.find((s) => s.name === "store.write" && s.attributes["cairn.digest"] === digest) ??
          undefined,
      30_000,
    );
    assert.equal(write.attributes["cairn.store"], "CAS");
    assert.equal(typeof write.attributes["cairn.store_kind"], "string");
    const upload = receiver.spans.find((s) => s.spanId === write.parentSpanId);
    assert.equal(upload?.name, "build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs");

    // The Connect path (HTTP/1.1 Connect protocol) has its RPC spans too.
    const connect = createClient(
      Capabilities,
      createConnectTransport({ baseUrl: cairn.url.replace("grpc://", "http://"), httpVersion: "1.1" }),
    );
    await connect.getCapabilities({ instanceName: "" });
    const capabilities = await receiver.waitFor(
      (spans) => spans.find((s) => s.name === "build.bazel.remote.execution.v2.Capabilities/GetCapabilities"),
      30_000,
    );
    assert.equal(capabilities.attributes["rpc.method"], "GetCapabilities");
    assert.equal(capabilities.attributes["cairn.instance_name"], "");
    assert.equal(capabilities.attributes["rpc.grpc.status_code"], 0);

    await cairn.stop(); // SIGTERM reaches the relaunched process through the launcher; exit code 0
    cairn = undefined;
  } finally {
    await cairn?.process.kill();
    await receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OTEL_EXPORTER_OTLP_PROTOCOL=grpc with zstd: spans arrive over OTLP/gRPC, uncompressed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn_otel_grpc_" });
  const calls: { path: string; contentType: string; encoding: string | undefined }[] = [];
  let arrived: () => void = () => {};
  const traceExport = new Promise<void>((r) => arrived = r);
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      const path = String(headers[":path"]);
      calls.push({
        path,
        contentType: String(headers["content-type"]),
        encoding: headers["grpc-encoding"] as string | undefined,
      });
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(new Uint8Array(5)); // an empty Export*ServiceResponse
      if (path.endsWith("TraceService/Export")) arrived();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  let cairn: AllInOne | undefined;
  try {
    cairn = await startAllInOne({
      dataDir: `${dir}/data`,
      env: seedEnv(`http://127.0.0.1:${port}`, "grpc"),
    });
    const client = new ExecClient(cairn.url);
    const action = shellAction("true");
    await client.upload(action.blobs); // FindMissing/BatchUpdate spans end at once
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      traceExport,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no TraceService/Export within 30 s: ${JSON.stringify(calls)}`)),
          30_000,
        );
      }),
    ]);
    clearTimeout(timer);
    const call = calls.find((c) => c.path === "/opentelemetry.proto.collector.trace.v1.TraceService/Export")!;
    assert.match(call.contentType, /^application\/grpc/);
    // Deno 2.9's gRPC exporter has no zstd: it says so and sends uncompressed (gzip would be honoured).
    assert.equal(call.encoding, undefined);
    await cairn.process.waitFor(/unsupported OTEL_EXPORTER_OTLP_COMPRESSION value "zstd"/, 10_000);
    await cairn.stop();
    cairn = undefined;
  } finally {
    await cairn?.process.kill();
    await new Promise<void>((r) => server.close(() => r()));
    await Deno.remove(dir, { recursive: true });
  }
});

/** Pids of the processes whose parent is `pid` (`ps`: reading /proc needs more than the test's permissions). */
async function childrenOf(pid: number): Promise<number[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "pid=,ppid="], stdout: "piped", stderr: "null" })
    .output();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim().split(/\s+/).map(Number))
    .filter(([, ppid]) => ppid === pid).map(([p]) => p!);
}

/** Whether process `pid` still runs (signal 0 is not offered by Deno; `ps -p` tells). */
async function alive(pid: number): Promise<boolean> {
  const out = await new Deno.Command("ps", { args: ["-p", String(pid)], stdout: "null", stderr: "null" })
    .output();
  return out.success;
}

Deno.test("OTEL_* relaunch: the relaunched server stops when its launcher is SIGKILLed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn_otel_kill_" });
  const receiver = new OtlpJsonReceiver();
  let cairn: AllInOne | undefined;
  try {
    cairn = await startAllInOne({ dataDir: `${dir}/data`, env: seedEnv(receiver.endpoint, "http/json") });
    const [server] = await childrenOf(cairn.process.pid);
    assert.ok(server !== undefined, "the launcher has no child: no relaunch happened");
    await cairn.process.kill(); // SIGKILL: the launcher forwards nothing, its lifeline pipe closes
    const deadline = Date.now() + 30_000;
    while (await alive(server)) {
      assert.ok(Date.now() < deadline, `relaunched server ${server} outlived its launcher by 30 s`);
      await new Promise<void>((r) => setTimeout(r, 100));
    }
    cairn = undefined;
  } finally {
    await cairn?.process.kill();
    await receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});
