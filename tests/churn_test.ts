// Connection-churn stress: rounds of h2load opening many connections with concurrent streams against a
// unary gRPC method on a separate server process (Deno 2.9.6 crashes under exactly this; we pin 2.9.0).
// The server must survive, answer afterwards, and h2load must see no failed or errored request.
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { Health } from "../src/gen/grpc/health/v1/health_pb.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import { healthRequestFile, runH2load, spawnEchoServer } from "./fixtures/h2load.ts";

Deno.test("connection churn: h2load rounds of many connections × concurrent streams; the server survives", async () => {
  const server = await spawnEchoServer([]);
  const file = await healthRequestFile();
  try {
    const plans: string[][] = [
      ...Array.from({ length: 6 }, () => ["-n", "4000", "-c", "50", "-m", "16"]),
      ...Array.from({ length: 3 }, () => ["-n", "2000", "-c", "200", "-m", "4"]),
      ["-n", "20000", "-c", "50", "-m", "16"],
    ];
    let total = 0;
    for (const plan of plans) {
      const r = await runH2load(server.port, [...plan, "-t", "1"], file);
      assert.equal(r.failed, 0, `h2load ${plan.join(" ")}: ${r.failed} failed\n${r.output}`);
      assert.equal(r.errored, 0, `h2load ${plan.join(" ")}: ${r.errored} errored\n${r.output}`);
      assert.equal(r.timeout, 0);
      assert.equal(r.succeeded, r.total);
      total += r.succeeded;
      assert.ok(await server.alive(), `the server died during h2load ${plan.join(" ")}`);
    }
    assert.equal(total, 6 * 4000 + 3 * 2000 + 20000);
    const health = createClient(Health, createGrpcClientTransport(`grpc://127.0.0.1:${server.port}`));
    assert.equal((await health.check({})).status, 1);
    assert.ok(await server.alive());
  } finally {
    const status = await server.stop();
    await Deno.remove(file).catch(() => {});
    assert.equal(status.signal ?? null, null, "the server should exit cleanly on SIGTERM, not be killed");
  }
});
