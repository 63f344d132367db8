/**
 * `experimental_prometheus`: the app serves Prometheus text metrics on the configured path, counting real gRPC
 * calls by method and status code.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { parseConfig } from "../src/config/mod.ts";
import { startCairn } from "../src/app.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import { ActionCache, Capabilities } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";

const CONFIG = `{
  stores: [
    { name: "CAS", memory: {} },
    { name: "AC", memory: {} },
  ],
  servers: [{
    listener: { http: { socket_address: "127.0.0.1:0" } },
    services: {
      cas: [{ cas_store: "CAS" }],
      ac: [{ ac_store: "AC" }],
      capabilities: [],
      experimental_prometheus: { path: "/metrics" },
    },
  }],
}`;

Deno.test("experimental_prometheus serves per-method gRPC counters and process gauges", async () => {
  const app = await startCairn(parseConfig(CONFIG, "metrics.json5", {}), {
    configPath: "metrics.json5",
    log: () => {},
  });
  try {
    const port = app.servers[0]!.port;
    const transport = createGrpcClientTransport(`grpc://127.0.0.1:${port}`);
    const caps = createClient(Capabilities, transport);
    for (let i = 0; i < 3; i++) await caps.getCapabilities({ instanceName: "" });
    const ac = createClient(ActionCache, transport);
    await assert.rejects(
      ac.getActionResult({ instanceName: "", actionDigest: { hash: "a".repeat(64), sizeBytes: 1n } }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound,
    );

    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const handled = (method: string, code: string) =>
      Number(
        new RegExp(
          `^cairn_grpc_server_handled_total\\{grpc_method="${method}",grpc_code="${code}"\\} (\\d+)$`,
          "m",
        )
          .exec(text)?.[1] ?? NaN,
      );
    assert.ok(handled("/build.bazel.remote.execution.v2.Capabilities/GetCapabilities", "OK") >= 3, text);
    assert.ok(
      handled("/build.bazel.remote.execution.v2.ActionCache/GetActionResult", "NOT_FOUND") >= 1,
      text,
    );
    assert.match(
      text,
      /^cairn_grpc_server_handling_seconds_count\{grpc_method="[^"]+GetCapabilities"\} \d+$/m,
    );
    assert.match(text, /^process_resident_memory_bytes \d+$/m);
    assert.equal(
      await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" }).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }),
      405,
    );
  } finally {
    await app.shutdown();
  }
});
