/**
 * Runs the transport and service suites again on the `Deno.serve` server path: each file in its own
 * `deno test` process with `CAIRN_SERVER_PATH=deno_serve` (read by `createCairnServer` when a listener has no
 * `server` field; mTLS listeners stay on `node_http2`). The same assertions hold on both paths: exact gRPC
 * codes for bad input, deadlines and cancellation, back-pressure, graceful close, churn, transport attacks.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/transport_deno_serve_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";

const FILES = [
  "transport_grpc_js_test.ts",
  "transport_http2_raw_test.ts",
  "transport_backpressure_test.ts",
  "transport_connect_test.ts",
  "transport_lifecycle_test.ts",
  "transport_tls_test.ts",
  "cache_services_test.ts",
  "churn_test.ts",
  // The transport attacks, with each path's own defences (node_http2-only timeout tests pin their path).
  "security/transport_attacks_test.ts",
  "security/cancelled_reads_test.ts",
];

for (const file of FILES) {
  Deno.test(`on Deno.serve: ${file}`, async () => {
    const path = new URL(`./${file}`, import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-all", "--no-check", path],
      env: { CAIRN_SERVER_PATH: "deno_serve", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.ok(!/Deno has panicked/.test(text), `Deno panicked running ${file} on Deno.serve:\n${text}`);
    assert.equal(out.code, 0, `${file} failed on the Deno.serve path:\n${text.slice(-6000)}`);
  });
}

Deno.test("Deno.serve path: HTTP/2 streams reset while a route, a Connect, gRPC-Web or gRPC call is pending leave the server up", async () => {
  const { createCairnServer } = await import("../src/transport/server.ts");
  const { healthBinding, healthProbe } = await import("./fixtures/transport_fixtures.ts");
  const http2 = (await import("node:http2")).default;
  const probe = healthProbe();
  const server = createCairnServer({
    listener: { socket_address: "127.0.0.1:0", server: "deno_serve" },
    bindings: [healthBinding(probe)],
    routes: [async (req) => {
      // A PUT route reads its body (the reset ends it), the others answer late with a static body.
      if (req.method === "PUT") await req.arrayBuffer().catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
      return new Response("late");
    }],
  });
  const { port } = await server.listen();
  const CHECK = "/grpc.health.v1.Health/Check";
  const kinds: { headers: Record<string, string>; body?: Uint8Array }[] = [
    { headers: { ":path": "/x" } },
    { headers: { ":method": "PUT", ":path": "/x", "content-length": "100" }, body: new Uint8Array(10) },
    // Connect unary and gRPC-Web with their bodies cut short: the handler waits for the rest.
    {
      headers: {
        ":method": "POST",
        ":path": CHECK,
        "content-type": "application/proto",
        "content-length": "50",
      },
      body: new Uint8Array(2),
    },
    {
      headers: { ":method": "POST", ":path": CHECK, "content-type": "application/grpc-web+proto" },
      body: new Uint8Array([0, 0, 0, 0, 9]),
    },
    { headers: { ":method": "POST", ":path": CHECK, "content-type": "application/grpc" } },
  ];
  try {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    for (let i = 0; i < 40; i++) {
      const kind = kinds[i % kinds.length]!;
      const s = session.request(kind.headers, { endStream: false });
      s.on("error", () => {});
      s.on("data", () => {});
      if (kind.body) s.write(kind.body);
      if (kind.headers["content-type"] === "application/grpc") s.end();
      // Reset at different points while the route (50 ms), the Connect call or the held gRPC call is pending.
      await new Promise((r) => setTimeout(r, (i % 10) * 5));
      s.close(http2.constants.NGHTTP2_CANCEL);
    }
    const answer = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ":path": "/x" });
      let body = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => body += d);
      s.on("end", () => resolve(body));
      s.on("error", reject);
      s.end();
    });
    assert.equal(answer, "late");
    session.destroy();
  } finally {
    probe.release();
    await server.close(200);
  }
});
