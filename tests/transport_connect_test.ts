// The same bindings through connect-es clients: gRPC (h2c, via createGrpcClientTransport), Connect over
// HTTP/1.1 (plain fetch, JSON) and HTTP/2, gRPC-Web over HTTP/1.1; plus plain HTTP routes and CORS.
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ByteStream } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { PreconditionFailureSchema } from "../src/gen/google/rpc/error_details_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import type { HttpListenerConfig, HttpRoute } from "../src/transport/types.ts";
import {
  byteStreamBinding,
  healthBinding,
  type HealthProbe,
  healthProbe,
  startServer,
} from "./fixtures/transport_fixtures.ts";

const routes: HttpRoute[] = [
  (req) => new URL(req.url).pathname === "/status" ? Response.json({ ok: true }) : undefined,
  (req) =>
    new URL(req.url).pathname === "/echo" && req.body
      ? new Response(req.body, { headers: { "content-type": "application/octet-stream" } }) // streamed back
      : undefined,
];

async function withServer(
  fn: (port: number, probe: HealthProbe) => Promise<void>,
  listener: Partial<HttpListenerConfig> = {},
): Promise<void> {
  const probe = healthProbe();
  const { server, port } = await startServer({
    bindings: [healthBinding(probe), byteStreamBinding(new Map([["b", new Uint8Array(200_000).fill(1)]]))],
    routes,
    listener,
  });
  try {
    await fn(port, probe);
  } finally {
    await server.close(100);
  }
}

Deno.test("connect-node gRPC transport (h2c): unary, streaming, errors with details, deadline", async () => {
  await withServer(async (port) => {
    const transport = createGrpcClientTransport(`grpc://127.0.0.1:${port}`);
    const health = createClient(Health, transport);
    const bs = createClient(ByteStream, transport);
    assert.equal((await health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
    const statuses: number[] = [];
    for await (const m of health.watch({})) statuses.push(m.status);
    assert.deepEqual(statuses, [1, 2, 1]);

    async function* chunks() {
      for (let i = 0; i < 10; i++) {
        yield { resourceName: "w", writeOffset: BigInt(i * 1000), data: new Uint8Array(1000) };
      }
    }
    assert.equal((await bs.write(chunks())).committedSize, 10_000n);
    let total = 0;
    for await (const m of bs.read({ resourceName: "b" })) total += m.data.length;
    assert.equal(total, 200_000);

    const err = await health.check({ service: "fail" }).catch((e) => ConnectError.from(e));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.FailedPrecondition);
    assert.equal(err.rawMessage, "Cannot check: blob missing");
    assert.equal(err.findDetails(PreconditionFailureSchema)[0]?.violations[0]?.subject, "blobs/abc/1");

    const unimpl = await health.list({}).catch((e) => ConnectError.from(e));
    assert.equal((unimpl as ConnectError).code, Code.Unimplemented);

    const late = await health.check({ service: "slow" }, { timeoutMs: 150 }).catch((e) =>
      ConnectError.from(e)
    );
    assert.equal((late as ConnectError).code, Code.DeadlineExceeded);
  });
});

Deno.test("Connect JSON over HTTP/1.1 with plain fetch", async () => {
  await withServer(async (port) => {
    const res = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ service: "" }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "SERVING" });

    const bad = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ service: "fail" }),
    });
    assert.equal(bad.status, 400);
    const body = await bad.json();
    assert.equal(body.code, "failed_precondition");
    assert.equal(body.message, "Cannot check: blob missing");
    assert.equal(body.details[0].type, "google.rpc.PreconditionFailure");
  });
});

Deno.test("Connect over HTTP/2 and gRPC-Web over HTTP/1.1 via connect-node", async () => {
  await withServer(async (port) => {
    for (
      const transport of [
        createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "2" }),
        createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
        createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
        createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "2" }),
      ]
    ) {
      const health = createClient(Health, transport);
      assert.equal((await health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
      const statuses: number[] = [];
      for await (const m of health.watch({})) statuses.push(m.status);
      assert.deepEqual(statuses, [1, 2, 1]);
      const err = await health.check({ service: "fail" }).catch((e) => ConnectError.from(e));
      assert.equal((err as ConnectError).code, Code.FailedPrecondition);
      assert.equal((err as ConnectError).findDetails(PreconditionFailureSchema).length, 1);
      const boom = await health.check({ service: "boom" }).catch((e) => ConnectError.from(e));
      assert.equal((boom as ConnectError).code, Code.Internal);
    }
  });
});

Deno.test("plain HTTP routes: JSON, a streamed body echoed back, 404 (HTTP/1.1 and HTTP/2)", async () => {
  await withServer(async (port) => {
    const status = await fetch(`http://127.0.0.1:${port}/status`);
    assert.deepEqual(await status.json(), { ok: true });
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff);
    const echo = await fetch(`http://127.0.0.1:${port}/echo`, { method: "POST", body: big });
    assert.deepEqual(new Uint8Array(await echo.arrayBuffer()), big);
    const missing = await fetch(`http://127.0.0.1:${port}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    // the same routes over HTTP/2 (prior knowledge)
    const http2 = await import("node:http2");
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ":path": "/status" });
        let s = "";
        req.setEncoding("utf8");
        req.on("data", (c: string) => s += c);
        req.on("end", () => resolve(s));
        req.on("error", reject);
        req.end();
      });
      assert.deepEqual(JSON.parse(body), { ok: true });
    } finally {
      session.close();
    }
  });
});

Deno.test("CORS: a listed origin gets preflight, methods and exposed headers; others get none", async () => {
  await withServer(async (port) => {
    const preflight = (origin: string, path = "/grpc.health.v1.Health/Check") =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type,x-custom",
        },
      }).then(async (r) => {
        await r.body?.cancel();
        return r;
      });
    const pre = await preflight("http://example.test");
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "http://example.test");
    assert.equal(pre.headers.get("access-control-allow-methods"), "POST, GET");
    assert.equal(pre.headers.get("access-control-allow-credentials"), null);
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /connect-protocol-version/i);
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /x-custom/);
    const cache = await preflight("http://example.test", "/cas/abc");
    assert.equal(cache.headers.get("access-control-allow-methods"), "GET, HEAD, PUT");
    const foreign = await preflight("http://evil.test");
    assert.equal(foreign.headers.get("access-control-allow-origin"), null);
    assert.equal(foreign.headers.get("access-control-allow-methods"), null);
    const res = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: "http://example.test" },
      body: "{}",
    });
    await res.body?.cancel();
    assert.equal(res.headers.get("access-control-allow-origin"), "http://example.test");
    assert.match(res.headers.get("access-control-expose-headers") ?? "", /grpc-status/i);
    const other = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: "http://evil.test" },
      body: "{}",
    });
    await other.body?.cancel();
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  }, { cors_allowed_origins: ["http://example.test"] });
});

Deno.test("CORS: no origin is allowed by default", async () => {
  await withServer(async (port) => {
    const pre = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "OPTIONS",
      headers: { origin: "http://localhost:3000", "access-control-request-method": "POST" },
    });
    await pre.body?.cancel();
    assert.equal(pre.headers.get("access-control-allow-origin"), null);
  });
});
