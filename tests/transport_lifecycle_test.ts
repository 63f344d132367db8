// Server lifecycle: several servers in one process, graceful close (in-flight calls finish, new
// connections refused), and cancellation of calls that outlive the grace period.
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Health } from "../src/gen/grpc/health/v1/health_pb.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import { parseSocketAddress } from "../src/transport/listener.ts";
import grpc from "@grpc/grpc-js";
import { grpcJsClient, healthBinding, healthProbe, startServer } from "./fixtures/transport_fixtures.ts";
import { waitUntil } from "./fixtures/wait.ts";

const HealthClient = grpcJsClient(Health);

Deno.test("several servers on several ports in one process", async () => {
  const servers = await Promise.all([0, 1, 2].map(() => startServer({ bindings: [healthBinding()] })));
  try {
    assert.equal(new Set(servers.map((s) => s.port)).size, 3);
    for (const { port } of servers) {
      const health = createClient(Health, createGrpcClientTransport(`grpc://127.0.0.1:${port}`));
      assert.equal((await health.check({})).status, 1);
    }
  } finally {
    await Promise.all(servers.map((s) => s.server.close(100)));
  }
});

Deno.test("graceful close lets an in-flight call finish and refuses new connections", async () => {
  // grpc-js here: connect-node's client under Deno reports "Premature close" for a stream that is in
  // flight when a GOAWAY arrives (a client-side quirk; raw node:http2 and grpc-js see the full response).
  const probe = healthProbe();
  const { server, port } = await startServer({ bindings: [healthBinding(probe)] });
  const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    // Connected first: under load grpc-js may take longer than the 50 ms below to connect.
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + 20_000, (err: Error | undefined) => err ? reject(err) : resolve())
    );
    const inFlight = new Promise<{ status: number }>((resolve, reject) => {
      client.check(
        { service: "held" },
        (err: Error | null, res: { status: number }) => err ? reject(err) : resolve(res),
      );
    });
    // Close once the call is in the handler (not after a fixed sleep: a loaded machine may not have
    // connected yet).
    await waitUntil(() => probe.started === 1, { what: "the call to reach the handler" });
    const closed = server.close(30_000);
    // New connections are refused while the call is still in flight.
    const during = createClient(Health, createGrpcClientTransport(`grpc://127.0.0.1:${port}`));
    const refused = await during.check({}).then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(refused?.code, Code.Unavailable);
    assert.equal(probe.completed, 0);
    probe.release();
    assert.equal((await inFlight).status, 1);
    assert.equal(probe.completed, 1);
    await closed;
  } finally {
    client.close();
  }
  const fresh = createClient(Health, createGrpcClientTransport(`grpc://127.0.0.1:${port}`));
  const err = await fresh.check({}).then(() => undefined, (e) => ConnectError.from(e));
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.Unavailable);
});

Deno.test("close after the grace period cancels calls still running and aborts their signals", async () => {
  const probe = healthProbe();
  const { server, port } = await startServer({ bindings: [healthBinding(probe)] });
  const health = createClient(Health, createGrpcClientTransport(`grpc://127.0.0.1:${port}`));
  const stuck = health.check({ service: "slow" }).then(() => undefined, (e) => ConnectError.from(e));
  await waitUntil(() => probe.started === 1, { what: "the call to reach the handler" });
  const t0 = Date.now();
  await server.close(200);
  // The "slow" call never ends on its own: close must not wait for it much past the grace period.
  assert.ok(Date.now() - t0 < 10_000, `close took ${Date.now() - t0} ms`);
  const err = await stuck;
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.Unavailable);
  assert.equal(probe.aborted.length, 1);
});

Deno.test("socket_address forms", () => {
  assert.deepEqual(parseSocketAddress("127.0.0.1:50051"), { host: "127.0.0.1", port: 50051 });
  assert.deepEqual(parseSocketAddress(":8080"), { host: "0.0.0.0", port: 8080 });
  assert.deepEqual(parseSocketAddress("[::1]:0"), { host: "::1", port: 0 });
  assert.throws(() => parseSocketAddress("localhost"), /socket_address must be host:port/);
});
